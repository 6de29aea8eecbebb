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
from typing import TYPE_CHECKING, Callable

from .commits import amend as amend_in_index

if TYPE_CHECKING:
    from .service import ObjectService

_ATTEMPTS = 3  # a PUT racing the tag change gets the change re-applied to the new version


async def amend(service: ObjectService, bucket: str, key: str, kind: str, changes: dict,
                version_id: str | None = None, check: Callable[[dict], None] | None = None) -> dict | None:
    """Change fields of a version of bucket/key without rewriting it (tags, ACL, Object Lock).

    `version_id` is an S3 version id ("null" too); None means the current version.
    A `kind` record carrying `changes` goes to a write quorum of the version's volume,
    then the index takes them; None if there is no such version. `check(version)` may
    refuse the change (Object Lock: retention never shortened); it runs before the disk
    record and again inside the index transaction. Refused there (a concurrent change won),
    a second record puts the version's fields back as the index has them, so a rebuild
    agrees with the index."""
    for _ in range(_ATTEMPTS):
        if version_id is None:
            record = await service.head(bucket, key)
        else:
            record = await service.get_version(bucket, key, version_id)
        if record is None:
            return None
        if check:
            check(record)
        volume, policy = service.home_of(record)
        doc = {"kind": kind, "bucket": bucket, "key": key, "version_id": record["version_id"]}
        quorum = policy.quorum
        await service.put_records(volume, {**doc, **changes, "changed": time.time()}, quorum)
        seen: dict = {}
        try:
            updated = await service.writer.submit(
                lambda ops, vid=record["version_id"]: amend_in_index(ops, bucket, key, vid, changes, check, seen))
        except Exception:
            if "row" in seen:   # refused by `check` in the transaction: restore what the index kept
                await service.put_records(volume, {**doc, **{f: seen["row"].get(f) for f in changes},
                                                   "changed": time.time()}, quorum)
            raise
        if updated is not None:
            return updated
        if version_id is not None:
            return None  # that version was deleted meanwhile
    raise RuntimeError(f"{bucket}/{key} kept changing while its {kind} was being set")
