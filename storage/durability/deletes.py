"""Finish deletes that a crash interrupted.

A DELETE writes tombstone records to a quorum of disks, then removes the object from
the index. A gateway killed between the two leaves an object that the index still
serves while its disks call it deleted, and `pocket index rebuild` (which trusts the
disks) would drop it: the index and the disks disagree about an object users can read.
The client never got an answer, so either outcome is allowed; the disks' outcome is the
one that survives a rebuild, so the scrubber makes the index agree with it. Only a
tombstone naming exactly the current version counts: a version written after the
delete started is never touched. The version's archives are then unreferenced and the
scrubber's garbage collection removes them like any orphan.
"""
from __future__ import annotations

import json
import logging
from typing import Awaitable, Callable

from ..objects.commits import delete_if_current

log = logging.getLogger("pocket.scrub")


async def tombstones(cluster, disk_ids) -> dict[tuple[str, str], set[str]]:
    """(bucket, key) -> version ids that tombstone records on these disks delete."""
    found: dict[tuple[str, str], set[str]] = {}
    for disk_id in disk_ids:
        try:
            async for _rec_id, data in cluster.disks[disk_id].iter_records():
                try:
                    rec = json.loads(data)
                except ValueError:
                    continue
                if rec.get("kind") == "tombstone":
                    found.setdefault((rec["bucket"], rec["key"]), set()).add(rec["version_id"])
        except Exception as e:  # a disk that stops answering: its tombstones wait for the next pass
            log.warning("scrub: records of disk %s could not be listed: %r", disk_id, e)
    return found


async def finish_deletes(cluster, index, write: Callable[[Callable], Awaitable], disk_ids) -> list[dict]:
    """Delete from the index every current version a tombstone names; returns what was deleted."""
    finished = []
    for (bucket, key), versions in sorted((await tombstones(cluster, disk_ids)).items()):
        current = await index.call(index.get_object, bucket, key)
        if current is None or current["version_id"] not in versions:
            continue
        removed = await write(lambda ops, b=bucket, k=key, v=current["version_id"]: delete_if_current(ops, b, k, v))
        if removed is not None:
            log.warning("scrub: %s/%s version %s was deleted on the disks but still in the index (a DELETE "
                        "interrupted by a crash); removed it from the index", bucket, key, removed["version_id"])
            finished.append({"bucket": bucket, "key": key, "version_id": removed["version_id"]})
    return finished
