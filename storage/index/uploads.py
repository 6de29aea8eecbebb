"""Multipart uploads and their parts in the index: the `uploads` and `parts` tables.

    uploads: bucket \\0 encoded key \\0 upload id   -> {"key": full key, "rec": upload}
    parts:   upload id + part number (u16 BE)      -> {"rec": part record}

Both sort the way S3 lists them, so ListMultipartUploads (by key, then upload id, which
is time-ordered) and ListParts (by part number) are range scans. `UploadTxn` wraps an
`IndexTxn` (the "ops" object) and adds the upload operations to the same transaction,
so a caller can, say, install a completed object and drop its upload atomically:

    writer.submit(lambda ops: (ops.put_object(...), UploadTxn(ops).delete_upload(...)))

Long keys are encoded as in keys.py (a verbatim prefix plus a hash); a run of such
keys sharing the prefix is buffered and re-sorted by full key, as ops.py does. One
known imperfection: keys containing NUL may interleave with the uploads of their
NUL-free prefix (the separator is NUL); no S3 client we know of produces such keys.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator

from . import keys as K
from .backend import prefix_end
from .ops import PREFIX, TRUNCATED, IndexTxn, MetadataIndexError, _pack, _unpack, roll_up, suffixed_scan

UPLOADS, PARTS = "uploads", "parts"
MAX_PART_NUMBER = 10_000
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


class NoSuchUpload(MetadataIndexError):
    """The upload id is unknown for this bucket and key (never created, completed or aborted)."""


def valid_upload_id(upload_id: str) -> bool:
    return bool(_UPLOAD_ID.fullmatch(upload_id or ""))


@dataclass
class UploadPage:
    """One page of ListMultipartUploads; the next_* markers continue without gaps."""
    uploads: list[dict] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_key_marker: str = ""
    next_upload_id_marker: str = ""


class UploadTxn:
    """Upload and part operations bound to one index transaction (see module docstring)."""

    def __init__(self, ops: IndexTxn):
        self.ops = ops
        self._txn = ops.txn

    # ---- uploads -------------------------------------------------------------------------
    def get_upload(self, bucket: str, key: str, upload_id: str) -> dict | None:
        if not valid_upload_id(upload_id):
            return None
        raw = self._txn.get(UPLOADS, K.upload_index_key(bucket, key, upload_id))
        if raw is None:
            return None
        doc = _unpack(raw)
        return doc["rec"] if doc["key"] == key else None

    def create_upload(self, bucket: str, key: str, upload: dict) -> None:
        """Record a new upload (upload["upload_id"] names it); NoSuchBucket if the bucket is gone."""
        self.ops._require_bucket(bucket)
        ik = K.upload_index_key(bucket, key, upload["upload_id"])
        self._txn.put(UPLOADS, ik, _pack({"key": key, "rec": upload}))

    def delete_upload(self, bucket: str, key: str, upload_id: str) -> list[dict] | None:
        """Forget an upload and all its parts; returns the parts, or None if there was no upload."""
        if self.get_upload(bucket, key, upload_id) is None:
            return None
        self._txn.remove(UPLOADS, K.upload_index_key(bucket, key, upload_id))
        parts = self.all_parts(upload_id)
        for p in parts:
            self._txn.remove(PARTS, K.part_index_key(upload_id, p["part_number"]))
        return parts

    # ---- parts ---------------------------------------------------------------------------
    def put_part(self, bucket: str, key: str, upload_id: str, number: int, record: dict) -> dict | None:
        """Install a part unless a newer upload of that number won; returns what it displaced.

        Newest version id wins, the rule the index rebuild applies, so two racing
        uploads of one part number resolve the same way in both. NoSuchUpload if the
        upload is gone."""
        if self.get_upload(bucket, key, upload_id) is None:
            raise NoSuchUpload(upload_id)
        current = self.get_part(upload_id, number)
        if current is not None and current["version_id"] > record["version_id"]:
            return record
        self._txn.put(PARTS, K.part_index_key(upload_id, number), _pack({"rec": record}))
        return current

    def get_part(self, upload_id: str, number: int) -> dict | None:
        raw = self._txn.get(PARTS, K.part_index_key(upload_id, number))
        return None if raw is None else _unpack(raw)["rec"]

    def list_parts(self, upload_id: str, after: int = 0, max_parts: int = 1000) -> tuple[list[dict], bool]:
        """Parts numbered above `after`, at most `max_parts`; and whether more follow."""
        prefix = bytes.fromhex(upload_id)
        out: list[dict] = []
        for _pk, raw in self._txn.range(PARTS, prefix + min(after + 1, 0xFFFF).to_bytes(2, "big"), prefix_end(prefix)):
            if len(out) == max_parts:
                return out, True
            out.append(_unpack(raw)["rec"])
        return out, False

    def all_parts(self, upload_id: str) -> list[dict]:
        return self.list_parts(upload_id, 0, MAX_PART_NUMBER)[0]

    def parts_after(self, after: bytes, limit: int) -> list[tuple[bytes, dict]]:
        """(table key, part) of every upload's parts after table key `after`, at most `limit`."""
        rows = []
        for pk, raw in self._txn.range(PARTS, after):
            if pk == after:
                continue
            rows.append((pk, _unpack(raw)["rec"]))
            if len(rows) == limit:
                break
        return rows

    # ---- listing -------------------------------------------------------------------------
    def _scan(self, bpfx: bytes, seek: bytes) -> Iterator[tuple[bytes, bytes, dict]]:
        """(key bytes, upload id bytes, upload) from about `seek` on, in (key, upload id)
        order; see ops.suffixed_scan."""
        return suffixed_scan(self._txn, UPLOADS, bpfx, seek, K.UPLOAD_SUFFIX_LEN, K.UPLOAD_ID_LEN)

    def list_uploads(self, bucket: str, prefix: str = "", delimiter: str = "", key_marker: str = "",
                     upload_id_marker: str = "", max_uploads: int = 1000) -> UploadPage:
        """S3 ListMultipartUploads as a range scan; `max_uploads` counts uploads plus prefixes.

        Without an upload-id marker only keys after `key_marker` are listed; with one, the
        marker key's later uploads too. A `key_marker` that is a common prefix skips it."""
        self.ops._require_bucket(bucket)
        page = UploadPage()
        if max_uploads <= 0:
            return page
        bpfx = K.bucket_prefix(bucket)
        pb, dl, km = (s.encode("utf-8") for s in (prefix, delimiter, key_marker))
        uid_marker = bytes.fromhex(upload_id_marker) if km and valid_upload_id(upload_id_marker) else None

        def after_marker(kb: bytes, uid: bytes) -> bool:
            if kb != km:
                return kb > km
            return uid_marker is not None and uid > uid_marker

        skip: bytes | None = None
        seek = max(pb, km)
        if dl and km.startswith(pb):
            rest = km[len(pb):]
            i = rest.find(dl)
            if i >= 0 and i + len(dl) == len(rest):
                skip = km
                seek = K.seek_past_prefix(km) or seek
        last: tuple[bytes, bytes | None] = (b"", None)
        for kind, value in roll_up(lambda target: self._scan(bpfx, target), self._scan(bpfx, seek), pb, dl, skip,
                                   max_uploads, wanted=lambda item: not km or after_marker(item[0], item[1])):
            if kind == TRUNCATED:
                page.is_truncated = True
            elif kind == PREFIX:
                page.common_prefixes.append(value.decode("utf-8"))
                last = (value, None)
            else:
                kb, uid, rec = value
                page.uploads.append(rec)
                last = (kb, uid)
        page.next_key_marker = last[0].decode("utf-8")
        page.next_upload_id_marker = last[1].hex() if last[1] else ""
        return page

    def iter_bucket_uploads(self, bucket: str) -> Iterator[dict]:
        """Every upload of a bucket (for deleting the bucket); consume inside the txn."""
        bpfx = K.bucket_prefix(bucket)
        for _kb, _uid, rec in self._scan(bpfx, b""):
            yield rec
