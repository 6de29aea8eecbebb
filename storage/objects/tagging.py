"""Changing an object's tags (or canned ACL) without rewriting the object.

Tags set at PUT time are part of the record, so they reach the manifest on every
archive. Later changes (PutObjectTagging, DeleteObjectTagging) are written the way
deletes are: a small `tags` record naming the version goes to a write quorum of the
object's volume, then the index record is updated in the same transaction that
checks the version is still current. `pocket index rebuild` applies the newest
`tags` record of each surviving version over its manifest, so the disks alone still
say what the tags are.
"""
from __future__ import annotations

import time

from .service import ObjectService, Policy

_ATTEMPTS = 3  # a PUT racing the tag change gets the change re-applied to the new version


async def set_tags(service: ObjectService, bucket: str, key: str, tags: dict[str, str]) -> dict | None:
    """Replace the tags of bucket/key's current version; None if there is no such object."""
    return await amend(service, bucket, key, "tags", {"tags": tags})


async def amend(service: ObjectService, bucket: str, key: str, kind: str, changes: dict) -> dict | None:
    """Change fields of bucket/key's current version without rewriting it (tags, ACL).

    A `kind` record carrying `changes` goes to a write quorum of the version's volume,
    then the index record takes them; None if there is no such object."""
    for _ in range(_ATTEMPTS):
        record = service.index.get_object(bucket, key)
        if record is None:
            return None
        volume = service.cluster.volumes[record["volume"]]
        policy = service.policies.get(record["policy"]) or Policy.parse(
            record["policy"], f"ec:{record['k']}+{record['m']}")
        await service.put_records(volume, {"kind": kind, "bucket": bucket, "key": key,
                                           "version_id": record["version_id"], **changes,
                                           "changed": time.time()}, policy.quorum)
        updated = await service.writer.submit(
            lambda ops, vid=record["version_id"]: _amend_if_current(ops, bucket, key, vid, changes))
        if updated is not None:
            return updated
    raise RuntimeError(f"{bucket}/{key} kept changing while its {kind} was being set")


def _amend_if_current(ops, bucket: str, key: str, version_id: str, changes: dict) -> dict | None:
    current = ops.get_object(bucket, key)
    if current is None or current["version_id"] != version_id:
        return None
    updated = {**current, **changes}
    ops.put_object(bucket, key, updated)
    return updated
