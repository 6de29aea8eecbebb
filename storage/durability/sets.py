"""Which archive sets the index says must exist: what scrub and repair check against.

An *archive set* is the `k+m` fragment archives of one version id, described by a
readable version record (bucket, key, version_id, volume, k, m, size, segment_size).
The index references them in two ways:

- an object version, current or not (versioned buckets keep noncurrent versions, which
  are no orphans and get repaired like current ones): a plain object is one set (its
  own version id); a completed multipart object has no archives of its own, its bytes
  are its parts, each a set with its own version id (storage/index/parts.py); a
  delete marker has none;
- an open multipart upload: every part uploaded so far (the `parts` DB).

Anything on disk outside these sets is garbage once it is old enough.
"""
from __future__ import annotations

import logging
from typing import AsyncIterator, Iterator

from ..index import volume_index
from ..index.versions import is_marker
from ..index import parts
from ..objects.contracts import VersionRecord

log = logging.getLogger("pocket.sets")


def version_sets(record: VersionRecord) -> list[dict]:
    """The archive sets holding an object record's bytes."""
    if parts.is_multipart(record):
        return [parts.part_record(record, p) for p in record["parts"]]
    return [record]


def live_sets(index) -> Iterator[dict]:
    """Every archive set the index references (every version's, and open uploads' parts)."""
    for bucket in index.list_buckets():
        for version in index.iter_versions(bucket["name"]):
            if not is_marker(version.record):
                yield from version_sets(version.record)
    yield from index.open_parts()


async def alive_sets(index) -> AsyncIterator[dict]:
    """live_sets for asyncio code: every read goes through `index.call` (off the loop on PostgreSQL)."""
    for bucket in await index.call(index.list_buckets):
        async for version in index.aiter_versions(bucket["name"]):
            if not is_marker(version.record):
                for s in version_sets(version.record):
                    yield s
    async for part in index.aopen_parts():
        yield part


async def sets_in_volumes(index, volume_ids: set[str]) -> AsyncIterator[dict]:
    """Every live archive set on one of these volumes: a range scan of each volume's
    entries in the volume index, so the cost follows the volumes, not the namespace.
    An index whose volume index is not filled yet is scanned whole instead."""
    if await index.call(volume_index.is_filled, index):
        for volume in sorted(volume_ids):
            async for s in volume_index.avolume_sets(index, volume):
                yield s
        return
    log.warning("the volume index of %s is not filled yet, so finding the versions of %d volumes scans the "
                "whole index; run `pocket index migrate-schema` to fill it", index.describe(), len(volume_ids))
    async for s in alive_sets(index):
        if s["volume"] in volume_ids:
            yield s


def find_set(index, bucket: str, key: str, version_id: str) -> dict | None:
    """The archive set `version_id` of bucket/key if the index still references it.

    `version_id` is an archive set's id: a version's own, or a part's of a multipart
    object (whose version, current or not, is found by scanning the key's history)."""
    current = index.get_object(bucket, key)
    candidates = [current] if current is not None else []
    if current is None or not any(s["version_id"] == version_id for s in version_sets(current)):
        candidates += [r for r in index.key_history(bucket, key) if not is_marker(r)]
    for record in candidates:
        for s in version_sets(record):
            if s["version_id"] == version_id:
                return s
    for part in index.open_parts():
        if part["version_id"] == version_id and part.get("bucket") == bucket and part.get("key") == key:
            return part
    return None


def find_sets(index, entries: list[dict]) -> list[dict | None]:
    """find_set of each repair queue entry, in one call: one thread hop for a batch of them."""
    return [find_set(index, e["bucket"], e["key"], e["version_id"]) for e in entries]
