"""Changing an object version's tags (or canned ACL) without rewriting the object.

Tags set at PUT time are part of the record, so they reach the manifest on every
archive. Later changes (PutObjectTagging, DeleteObjectTagging, PutObjectAcl) are written
the way deletes are: a small `tags` (`acl`) record naming the version goes to a write
quorum of the version's volume, then the index record (the version's row and, when it
is current, the current record) takes them in one transaction that checks the version
is still there. `pocket index rebuild` applies the newest such record of each surviving
version over its manifest, so the disks alone still say what the tags are.
"""
from __future__ import annotations

import time

from .commits import amend as amend_in_index
from .service import ObjectService

_ATTEMPTS = 3  # a PUT racing the tag change gets the change re-applied to the new version


async def set_tags(service: ObjectService, bucket: str, key: str, tags: dict[str, str],
                   version_id: str | None = None) -> dict | None:
    """Replace the tags of a version (the current one by default); None if there is no such version."""
    return await amend(service, bucket, key, "tags", {"tags": tags}, version_id)


async def amend(service: ObjectService, bucket: str, key: str, kind: str, changes: dict,
                version_id: str | None = None) -> dict | None:
    """Change fields of a version of bucket/key without rewriting it (tags, ACL).

    `version_id` is an S3 version id ("null" too); None means the current version.
    A `kind` record carrying `changes` goes to a write quorum of the version's volume,
    then the index takes them; None if there is no such version."""
    for _ in range(_ATTEMPTS):
        if version_id is None:
            record = await service.index.call(service.index.get_object, bucket, key)
        else:
            record = await service.index.call(service.index.get_version, bucket, key, version_id)
        if record is None:
            return None
        volume = service.cluster.volumes[record["volume"]]
        await service.put_records(volume, {"kind": kind, "bucket": bucket, "key": key,
                                           "version_id": record["version_id"], **changes,
                                           "changed": time.time()}, service.policy_of(record).quorum)
        updated = await service.writer.submit(
            lambda ops, vid=record["version_id"]: amend_in_index(ops, bucket, key, vid, changes))
        if updated is not None:
            return updated
        if version_id is not None:
            return None  # that version was deleted meanwhile
    raise RuntimeError(f"{bucket}/{key} kept changing while its {kind} was being set")
