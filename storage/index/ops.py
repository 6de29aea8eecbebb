"""Transaction-bound index operations (the "ops" object) and record format.

All index logic lives here, above the backend seam (backend.py), so that every backend,
``Index.write`` callers and the group-commit ``IndexWriter`` share one implementation.

Values are orjson-encoded envelopes ``{"v": 1, "rec": ...}``; object values
also carry the full ``"key"`` (needed for hashed long keys, see keys.py).
Stored records must therefore be JSON-serialisable dicts.  Object keys are
compared by UTF-8 bytes everywhere, never by ``str`` order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import orjson

from . import keys as K
from .backend import Conflicted, IndexFull, IndexUnavailable, MetadataIndexError, Txn, prefix_end
from .volume_index import VolumeIndexedTxn

FORMAT_VERSION = 1

__all__ = ["IndexTxn", "ListPage", "MetadataIndexError", "NoSuchBucket", "BucketNotEmpty", "IndexFull",
           "IndexUnavailable", "Conflicted"]


class NoSuchBucket(MetadataIndexError):
    pass


class BucketNotEmpty(MetadataIndexError):
    pass


PREFIX, ITEM, TRUNCATED = "prefix", "item", "truncated"


def roll_up(rescan: Callable[[bytes], Iterator[tuple]], items: Iterator[tuple], pb: bytes, dl: bytes,
            skip: bytes | None, limit: int, wanted: Callable[[tuple], bool] = lambda item: True):
    """The S3 delimiter roll-up that ListObjects and ListMultipartUploads share.

    `items` are tuples whose first element is the key's bytes, in key order. Yields
    (PREFIX, common prefix) and (ITEM, item) until `limit` of them, then (TRUNCATED, None)
    if more would follow. After a common prefix it seeks past every key under it with
    `rescan(seek)`, or skips them one by one when the prefix is too long to seek to;
    keys under `skip` (a common prefix used as a marker) are skipped the same way."""
    count = 0
    it = items
    try:
        while True:
            item = next(it, None)
            if item is None:
                return
            kb = item[0]
            if not kb.startswith(pb):
                if kb < pb:
                    continue  # a scan may start a little early inside a run of long keys
                return  # keys are >= prefix, so we've left its range
            if (skip is not None and kb.startswith(skip)) or not wanted(item):
                continue
            cp = None
            if dl:
                i = kb.find(dl, len(pb))
                if i >= 0:
                    cp = kb[: i + len(dl)]
            if count == limit:
                yield TRUNCATED, None
                return
            count += 1
            if cp is None:
                yield ITEM, item
                continue
            yield PREFIX, cp
            skip = cp
            target = K.seek_past_prefix(cp)
            if target is not None:
                it.close()
                it = rescan(target)
    finally:
        it.close()


def listing_start(pb: bytes, dl: bytes, sab: bytes) -> tuple[bytes, bool, bytes | None]:
    """Where a listing after marker `sab` starts: (lower bound, exclusive, skip).

    A marker that is itself a common prefix (prefix + ... + delimiter, the delimiter only
    at its end) skips every key under it (`skip`), so a common prefix works as a
    continuation marker; when it is short enough the scan seeks straight past it."""
    if sab and sab >= pb:
        lower, exclusive = sab, True
    else:
        lower, exclusive = pb, False
    skip: bytes | None = None  # common prefix whose keys are being skipped
    if dl and sab.startswith(pb):
        rest = sab[len(pb):]
        i = rest.find(dl)
        if i >= 0 and i + len(dl) == len(rest):
            skip = sab
            target = K.seek_past_prefix(sab)
            if target is not None:
                lower, exclusive = target, False
    return lower, exclusive, skip


@dataclass
class ListPage:
    """One page of an S3-style listing.

    ``next_marker`` is the last key or common prefix returned ('' if none);
    passing it back as ``start_after`` continues without repeats or gaps.
    """
    contents: list[tuple[str, dict]] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_marker: str = ""


def _pack(doc: dict) -> bytes:
    return orjson.dumps({"v": FORMAT_VERSION, **doc})


def _unpack(raw: bytes) -> dict:
    doc = orjson.loads(raw)
    if doc.get("v") != FORMAT_VERSION:
        raise MetadataIndexError(f"unsupported record format version {doc.get('v')!r}")
    return doc



def suffixed_scan(txn: Txn, table: str, bpfx: bytes, seek: bytes, suffix_len: int,
                  id_len: int) -> Iterator[tuple[bytes, bytes, dict]]:
    """(key bytes, id bytes, record) of a table keyed `bucket prefix + encoded key + suffix`
    (the uploads and versions tables), from about `seek` on, in (key, id) order.

    The suffix is `suffix_len` bytes ending in a fixed-length id. Keys longer than
    keys.PREFIX_LEN form runs in hash order (keys.py); a run is buffered and re-sorted by
    full key. Like IndexTxn._scan it may start a little before `seek` inside such a run;
    callers filter."""
    plen = len(bpfx)
    run: list[tuple[bytes, bytes, dict]] = []
    run_prefix = b""
    for ik, raw in txn.range(table, bpfx + seek[:K.PREFIX_LEN], prefix_end(bpfx)):
        enc, ident = ik[plen:-suffix_len], ik[-id_len:]
        doc = _unpack(raw)
        if len(enc) < K.PREFIX_LEN:
            if run:
                yield from sorted(run, key=lambda r: (r[0], r[1]))
                run = []
            yield enc, ident, doc["rec"]
        else:  # a long key: buffer its run (the P-byte key itself included) and sort
            if run and enc[:K.PREFIX_LEN] != run_prefix:
                yield from sorted(run, key=lambda r: (r[0], r[1]))
                run = []
            run_prefix = enc[:K.PREFIX_LEN]
            run.append((doc["key"].encode("utf-8"), ident, doc["rec"]))
    if run:
        yield from sorted(run, key=lambda r: (r[0], r[1]))


class IndexTxn:
    """S3-level operations bound to one backend transaction (read-only or write).

    Obtained from ``Index.read()`` or passed to ``Index.write(fn)`` /
    ``IndexWriter.submit(fn)``.  Must only be used in the thread and during
    the lifetime of that transaction.
    """

    def __init__(self, txn: Txn):
        if txn.writable and not isinstance(txn, VolumeIndexedTxn):
            txn = VolumeIndexedTxn(txn)   # every write keeps the volume index in step
        self.txn = txn
        self.writable = txn.writable

    def snapshot(self) -> int | None:
        return self.txn.snapshot()

    # ---- buckets -------------------------------------------------------
    def get_bucket(self, name: str) -> dict | None:
        raw = self.txn.get("buckets", K.bucket_bytes(name))
        return None if raw is None else _unpack(raw)["rec"]

    def create_bucket(self, name: str, record: dict | None = None) -> bool:
        """Insert a bucket; False (and no change) if it already exists."""
        rec = {**(record or {}), "name": name}
        return self.txn.insert("buckets", K.bucket_bytes(name), _pack({"rec": rec}))

    def put_bucket(self, name: str, record: dict) -> dict | None:
        """Replace (or insert) a bucket record; returns the previous one."""
        rec = {**record, "name": name}
        raw = self.txn.get("buckets", K.bucket_bytes(name))
        self.txn.put("buckets", K.bucket_bytes(name), _pack({"rec": rec}))
        return None if raw is None else _unpack(raw)["rec"]

    def delete_bucket(self, name: str) -> bool:
        """Delete an empty bucket; False if absent, BucketNotEmpty if not empty.

        The emptiness check is in the same txn, so no PUT can slip in between.
        """
        kb = K.bucket_bytes(name)
        if self.txn.get("buckets", kb) is None:
            return False
        if not self.bucket_is_empty(name):
            raise BucketNotEmpty(name)
        return self.txn.remove("buckets", kb)

    def list_buckets(self) -> list[dict]:
        return [_unpack(v)["rec"] for _, v in self.txn.range("buckets")]  # key order == name bytes order

    def bucket_is_empty(self, name: str) -> bool:
        """No object, and no version or delete marker either (S3's rule for DeleteBucket)."""
        prefix = K.bucket_prefix(name)
        for table in ("objects", "versions"):
            if next(self.txn.range(table, prefix, prefix_end(prefix)), None) is not None:
                return False
        return True

    def _require_bucket(self, bucket: str) -> None:
        if self.txn.get("buckets", K.bucket_bytes(bucket)) is None:
            raise NoSuchBucket(bucket)

    # ---- objects -------------------------------------------------------
    def get_object(self, bucket: str, key: str) -> dict | None:
        raw = self.txn.get("objects", K.object_index_key(bucket, key))
        if raw is None:
            return None
        doc = _unpack(raw)
        return doc["rec"] if doc["key"] == key else None  # hash collision guard

    def put_object(self, bucket: str, key: str, record: dict) -> dict | None:
        """Insert/replace an object record; returns the previous record.

        Raises NoSuchBucket if the bucket does not exist (checked atomically,
        so a concurrent bucket delete can't leave orphaned objects).
        """
        self._require_bucket(bucket)
        ik = K.object_index_key(bucket, key)
        old = self.txn.get("objects", ik)
        prev = None
        if old is not None:
            doc = _unpack(old)
            if doc["key"] != key:
                raise MetadataIndexError(f"blake2b collision between {doc['key']!r} and {key!r}")
            prev = doc["rec"]
        self.txn.put("objects", ik, _pack({"key": key, "rec": record}))
        return prev

    def create_object(self, bucket: str, key: str, record: dict) -> bool:
        """Insert an object record unless the key has one (False, and no change).

        Never reads the key's absence first: on PostgreSQL (SERIALIZABLE) reading a key
        that is not there locks its whole btree page, and two gateways creating
        neighbouring keys then aborted each other's batches (issue 11). An insert that
        races another gateway's insert of the same key is a serialization failure, so
        the transaction is re-run and sees the winner's row."""
        self._require_bucket(bucket)
        return self.txn.insert("objects", K.object_index_key(bucket, key), _pack({"key": key, "rec": record}))

    def delete_object(self, bucket: str, key: str) -> dict | None:
        """Remove an object record; returns it, or None if absent."""
        ik = K.object_index_key(bucket, key)
        raw = self.txn.get("objects", ik)
        if raw is None:
            return None
        doc = _unpack(raw)
        if doc["key"] != key:
            return None
        self.txn.remove("objects", ik)
        return doc["rec"]

    def _scan(self, bpfx: bytes, lower: bytes, exclusive: bool) -> Iterator[tuple[bytes, bytes]]:
        """Yield (full_key_bytes, raw_value) for keys >= lower (> if exclusive)
        of one bucket, in full-key byte order.

        Seeks to ``lower[:P]``: every key >= lower has an encoded form >= that.
        Hashed runs (keys > P bytes sharing their first P bytes) are buffered
        and re-sorted by full key.  Keys below ``lower`` that the seek lands on
        (at most the P-byte key and its run) are filtered out.
        """
        plen = len(bpfx)

        def wanted(kb: bytes) -> bool:
            return kb > lower or (kb == lower and not exclusive)

        run: list[tuple[bytes, bytes]] = []
        run_prefix = b""
        for ik, raw in self.txn.range("objects", bpfx + lower[:K.PREFIX_LEN], prefix_end(bpfx)):
            enc = ik[plen:]
            if run and not (K.is_hashed(enc) and enc[:K.PREFIX_LEN] == run_prefix):
                run.sort(key=lambda item: item[0])
                yield from (item for item in run if wanted(item[0]))
                run = []
            if not K.is_hashed(enc):
                if wanted(enc):
                    yield enc, raw
                continue
            run_prefix = enc[:K.PREFIX_LEN]
            run.append((_unpack(raw)["key"].encode("utf-8"), raw))
        run.sort(key=lambda item: item[0])
        yield from (item for item in run if wanted(item[0]))

    def iter_objects(self, bucket: str, start_after: str = "") -> Iterator[tuple[str, dict]]:
        """(key, record) pairs after ``start_after`` in full-key byte order."""
        self._require_bucket(bucket)
        sab = start_after.encode("utf-8")
        for kb, raw in self._scan(K.bucket_prefix(bucket), sab, bool(sab)):
            yield kb.decode("utf-8"), _unpack(raw)["rec"]

    def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "",
                     start_after: str = "", max_keys: int = 1000) -> ListPage:
        """S3 ListObjects semantics as a range scan; see ``ListPage``.

        ``max_keys`` counts keys plus common prefixes.  A ``start_after`` that
        is itself a common prefix (prefix + ... + delimiter, delimiter occurring
        only at its end) skips every key under it, so a common prefix works as
        a continuation marker.
        """
        self._require_bucket(bucket)
        if max_keys <= 0:
            return ListPage()
        bpfx = K.bucket_prefix(bucket)
        pb, dl, sab = (s.encode("utf-8") for s in (prefix, delimiter, start_after))

        lower, exclusive, skip = listing_start(pb, dl, sab)
        page = ListPage()
        last = b""
        for kind, value in roll_up(lambda seek: self._scan(bpfx, seek, False), self._scan(bpfx, lower, exclusive),
                                   pb, dl, skip, max_keys):
            if kind == TRUNCATED:
                page.is_truncated = True
            elif kind == PREFIX:
                page.common_prefixes.append(value.decode("utf-8"))
                last = value
            else:
                kb, raw = value
                page.contents.append((kb.decode("utf-8"), _unpack(raw)["rec"]))
                last = kb
        page.next_marker = last.decode("utf-8")
        return page

    # ---- volumes & meta --------------------------------------------------
    def get_volumes(self) -> list[dict]:
        return [_unpack(v)["rec"] for _, v in self.txn.range("volumes")]

    def put_volumes(self, volumes: list[dict]) -> None:
        """Replace the whole volume list (order preserved)."""
        self.txn.clear("volumes")
        for i, vol in enumerate(volumes):
            self.txn.put("volumes", b"%08d" % i, _pack({"rec": vol}))

    def get_meta(self, name: str, default: Any = None) -> Any:
        raw = self.txn.get("meta", name.encode("utf-8"))
        return default if raw is None else _unpack(raw)["value"]

    def put_meta(self, name: str, value: Any) -> None:
        self.txn.put("meta", name.encode("utf-8"), _pack({"value": value}))

    def delete_meta(self, name: str) -> bool:
        return self.txn.remove("meta", name.encode("utf-8"))

    def meta_under(self, prefix: str) -> dict[str, Any]:
        """Every meta value whose name starts with `prefix`, by the rest of its name: rows
        that each writer keeps apart so that writers on several gateways never conflict."""
        start = prefix.encode("utf-8")
        return {k[len(start):].decode("utf-8"): _unpack(v)["value"]
                for k, v in self.txn.range("meta", start, prefix_end(start))}
