"""Which archive sets the index says must exist: what scrub and repair check against.

An *archive set* is the `k+m` fragment archives of one version id, described by a
readable version record (bucket, key, version_id, volume, k, m, size, segment_size).
The index references them in two ways:

- a current object: a plain object is one set (its own version id); a completed
  multipart object has no archives of its own, its bytes are its parts, each a set
  with its own version id (storage/objects/parts.py);
- an open multipart upload: every part uploaded so far (the `parts` DB).

Anything on disk outside these sets is garbage once it is old enough.
"""
from __future__ import annotations

from typing import Iterator

from ..index.ops import _unpack
from ..objects import parts


def version_sets(record: dict) -> list[dict]:
    """The archive sets holding an object record's bytes."""
    if parts.is_multipart(record):
        return [parts.part_record(record, p) for p in record["parts"]]
    return [record]


def open_parts(index, batch: int = 1000) -> Iterator[dict]:
    """Part records of uploads not yet completed or aborted, read a batch per short txn."""
    after = b""
    while True:
        rows = []
        with index.read() as ops:
            cur = ops._txn.cursor(db=ops._db["parts"])
            found = cur.set_range(after) if after else cur.first()
            while found and len(rows) < batch:
                if cur.key() != after:
                    rows.append((cur.key(), _unpack(cur.value())["rec"]))
                found = cur.next()
        if not rows:
            return
        for _, rec in rows:
            yield rec
        after = rows[-1][0]


def live_sets(index) -> Iterator[dict]:
    """Every archive set the index references (objects' and open uploads' parts)."""
    for bucket in index.list_buckets():
        for _key, record in index.iter_objects(bucket["name"]):
            yield from version_sets(record)
    yield from open_parts(index)


def find_set(index, bucket: str, key: str, version_id: str) -> dict | None:
    """The archive set `version_id` of bucket/key if the index still references it."""
    current = index.get_object(bucket, key)
    if current is not None:
        for s in version_sets(current):
            if s["version_id"] == version_id:
                return s
    for part in open_parts(index):
        if part["version_id"] == version_id and part.get("bucket") == bucket and part.get("key") == key:
            return part
    return None
