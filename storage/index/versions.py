"""Object versions and delete markers of versioned buckets: the `versions` table.

    versions: bucket \\0 encoded key \\0 inverted version id  -> {"key": full key, "rec": record}

The `objects` DB stays "the visible current version of each key", so GET and ListObjects
remain one lookup or one range scan whatever versioning does. A key of a versioned
bucket that has *history* (rows here) is described by its rows: the newest row is the
latest version; when it is a delete marker the key has no `objects` entry. A key without
rows (written before its bucket was versioned, or in a bucket never versioned) has one
version: its `objects` record, S3's "null" version. The first versioned write to such a
key copies that record here first (`ensure_history`), so no version is ever lost.

Version ids are the time-ordered internal ids (objects/ids.py); inverted, they make one
key's rows newest first. A record's S3 version id is its `version_id` when it was
written with versioning Enabled (`"versioned": true`), else "null". A delete marker is a
record with `"delete_marker": true` and no data.

A version copied from another S3 by `pocket migrate copy` keeps the id its source gave
it (applications store version ids), as `"s3_version_id"`, while its internal id, made
from the source's Last-Modified, keeps the rows in the source's order. Such ids are
whatever the source chose (AWS: 32 URL-safe characters), so `get` finds them among the
key's rows when the direct lookup by internal id does not.

Long keys are encoded as in keys.py; a run of them sharing the verbatim prefix is
buffered and re-sorted by (full key, inverted id), as uploads.py does. Keys containing
NUL may interleave with their NUL-free prefix's rows (same caveat as uploads.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator

from . import keys as K
from .backend import prefix_end
from .ops import ITEM, PREFIX, TRUNCATED, IndexTxn, _pack, _unpack, listing_start, roll_up, suffixed_scan

TABLE = "versions"
NULL = "null"
_VERSION_ID = re.compile(r"[0-9a-f]{32}")
# Ids other S3 servers hand out, which migrated versions keep: AWS's 32 URL-safe
# characters, UUIDs (moto, MinIO), 32 hex (SeaweedFS, Pocket).
_SOURCE_VERSION_ID = re.compile(r"[A-Za-z0-9._-]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def valid_version_id(version_id: str) -> bool:
    """What S3 accepts as a version id here: "null", one of our ids, or one of the forms
    a migrated version may have brought from its source; anything else is malformed
    (InvalidArgument, as S3 answers)."""
    return version_id == NULL or bool(_SOURCE_VERSION_ID.fullmatch(version_id or ""))


def internal_id(version_id: str) -> bool:
    return bool(_VERSION_ID.fullmatch(version_id))


def s3_version_id(record: dict) -> str:
    """The version id S3 clients see for a record."""
    if not record.get("versioned"):
        return NULL
    return record.get("s3_version_id") or record["version_id"]


def is_marker(record: dict) -> bool:
    return bool(record.get("delete_marker"))


@dataclass
class Version:
    """One row of a version listing."""
    key: str
    record: dict
    is_latest: bool
    noncurrent_since: float | None = None  # set by Index.iter_versions: when the next newer one was made

    @property
    def version_id(self) -> str:
        return s3_version_id(self.record)


@dataclass
class VersionPage:
    """One page of ListObjectVersions; next_* continue without gaps or repeats."""
    versions: list[Version] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_key_marker: str = ""
    next_version_id_marker: str = ""


class VersionTxn:
    """Version operations bound to one index transaction (like uploads.UploadTxn)."""

    def __init__(self, ops: IndexTxn):
        self.ops = ops
        self._txn = ops.txn

    # ---- one key -------------------------------------------------------------------------
    def key_versions(self, bucket: str, key: str) -> Iterator[dict]:
        """The key's history rows, newest first (empty when the key has no history)."""
        prefix = K.key_versions_prefix(bucket, key)
        for ik, raw in self._txn.range(TABLE, prefix, prefix_end(prefix)):
            if len(ik) != len(prefix) + K.VERSION_ID_LEN:
                continue  # another key whose rows start with ours (a NUL in it, or a hash starting with one)
            doc = _unpack(raw)
            if doc["key"] == key:
                yield doc["rec"]

    def has_history(self, bucket: str, key: str) -> bool:
        return next(self.key_versions(bucket, key), None) is not None

    def get(self, bucket: str, key: str, version_id: str) -> dict | None:
        """The version with S3 id `version_id` ("null" included), or None.

        A key without history has only its null version: its `objects` record."""
        if version_id == NULL:
            for rec in self.key_versions(bucket, key):
                if not rec.get("versioned"):
                    return rec
            if self.has_history(bucket, key):
                return None
            current = self.ops.get_object(bucket, key)
            return None if current is None or current.get("versioned") else current
        if internal_id(version_id):
            raw = self._txn.get(TABLE, K.version_index_key(bucket, key, version_id))
            doc = _unpack(raw) if raw is not None else None
            if doc is not None and doc["key"] == key:
                return doc["rec"]
        for rec in self.key_versions(bucket, key):     # a migrated version's source id
            if rec.get("s3_version_id") == version_id and rec.get("versioned"):
                return rec
        return None

    def put(self, bucket: str, key: str, record: dict) -> None:
        self.ops._require_bucket(bucket)
        self._txn.put(TABLE, K.version_index_key(bucket, key, record["version_id"]),
                      _pack({"key": key, "rec": record}))

    def delete(self, bucket: str, key: str, version_id: str) -> bool:
        """Remove one row by internal version id."""
        return self._txn.remove(TABLE, K.version_index_key(bucket, key, version_id))

    def ensure_history(self, bucket: str, key: str) -> None:
        """Before the first versioned change of a key: its current record becomes a row."""
        if self.has_history(bucket, key):
            return
        current = self.ops.get_object(bucket, key)
        if current is not None:
            self.put(bucket, key, current)

    def refresh_current(self, bucket: str, key: str) -> dict | None:
        """Make `objects` show the newest row (none if it is a delete marker); returns it.

        A key whose last row went keeps no `objects` entry either."""
        latest = next(self.key_versions(bucket, key), None)
        if latest is None or is_marker(latest):
            self.ops.delete_object(bucket, key)
        else:
            self.ops.put_object(bucket, key, latest)
        return latest

    # ---- listing -------------------------------------------------------------------------
    def _rows(self, bpfx: bytes, seek: bytes) -> Iterator[tuple[bytes, bytes, dict]]:
        """(key bytes, inverted id, record) from about `seek` on, in (key, newest first)
        order; see ops.suffixed_scan."""
        return suffixed_scan(self._txn, TABLE, bpfx, seek, K.VERSION_SUFFIX_LEN, K.VERSION_ID_LEN)

    def _merged(self, bpfx: bytes, seek: bytes) -> Iterator[tuple[bytes, bytes, dict, bool]]:
        """Every version from about `seek` on: (key bytes, inverted id, record, is latest).

        Keys with history come from their rows; keys without, from `objects` (their null
        version). Both scans are in full-key order, so this is a merge."""
        rows = self._rows(bpfx, seek)
        current = self.ops._scan(bpfx, seek[:K.PREFIX_LEN], False)
        row, obj = next(rows, None), next(current, None)
        previous = None
        while row is not None or obj is not None:
            if row is not None and (obj is None or row[0] <= obj[0]):
                if obj is not None and obj[0] == row[0]:
                    obj = next(current, None)  # the key's current record is one of its rows
                yield row[0], row[1], row[2], row[0] != previous
                previous = row[0]
                row = next(rows, None)
            else:
                rec = _unpack(obj[1])["rec"]
                yield obj[0], K.inverted_id(rec["version_id"]), rec, True
                obj = next(current, None)

    def list_versions(self, bucket: str, prefix: str = "", delimiter: str = "", key_marker: str = "",
                      version_id_marker: str = "", max_keys: int = 1000) -> VersionPage:
        """S3 ListObjectVersions: versions and delete markers in key order, newest first.

        `max_keys` counts versions plus common prefixes. Without a version-id marker the
        listing starts after every version of `key_marker`; with one, after that version
        of it. A `key_marker` that is a common prefix skips it, as in ListObjects."""
        self.ops._require_bucket(bucket)
        page = VersionPage()
        if max_keys <= 0:
            return page
        bpfx = K.bucket_prefix(bucket)
        pb, dl, km = (s.encode("utf-8") for s in (prefix, delimiter, key_marker))
        marker_inv = self._marker_position(bucket, key_marker, version_id_marker)
        lower, _exclusive, skip = listing_start(pb, dl, km)

        def after_marker(item) -> bool:
            kb, inv = item[0], item[1]
            if kb != km:
                return kb > km
            return marker_inv is not None and inv > marker_inv

        last: tuple[bytes, dict | None] = (b"", None)
        for kind, value in roll_up(lambda target: self._merged(bpfx, target), self._merged(bpfx, lower), pb, dl,
                                   skip, max_keys, wanted=after_marker):
            if kind == TRUNCATED:
                page.is_truncated = True
            elif kind == PREFIX:
                page.common_prefixes.append(value.decode("utf-8"))
                last = (value, None)
            elif kind == ITEM:
                kb, _inv, rec, latest = value
                page.versions.append(Version(kb.decode("utf-8"), rec, latest))
                last = (kb, rec)
        if page.is_truncated:
            page.next_key_marker = last[0].decode("utf-8")
            page.next_version_id_marker = s3_version_id(last[1]) if last[1] is not None else ""
        return page

    def _marker_position(self, bucket: str, key_marker: str, version_id_marker: str) -> bytes | None:
        """The inverted id after which the marker key's versions continue (None: skip the key).

        A version-id marker that names no version of the key continues with the key's
        versions older than that id (a deleted version's id), or skips the key ("null")."""
        if not key_marker or not version_id_marker:
            return None
        rec = self.get(bucket, key_marker, version_id_marker)
        if rec is not None:
            return K.inverted_id(rec["version_id"])
        if version_id_marker == NULL or not internal_id(version_id_marker):
            return None
        return K.inverted_id(version_id_marker)
