"""Small durable records on the disks: tombstones, delete markers, bucket events, volume tables.

The index is a cache of the disks, so every change that has no fragment archive of its
own is written here first (to every disk of a volume that is up) and replayed by
`pocket index rebuild` (index/rebuild.py). The object service and the disk tools both
write them, so this sits below both.
"""
from __future__ import annotations

import asyncio

import orjson

from ..cluster import Cluster
from .ids import new_id
from .put import is_full


async def write_record(cluster: Cluster, disk_ids, doc: dict, timeout: float) -> tuple[str, int]:
    """Write a small record to each of these disks that is up; returns (record id, disks that took it)."""
    rec_id = new_id()
    doc = {**doc, "id": rec_id}
    # The index's own encoder: a value it would refuse (an integer past 64 bits) fails
    # here, before any disk has the record, not in the commit or a later index rebuild.
    data = orjson.dumps(doc)

    async def one(disk_id):
        if not cluster.is_up(disk_id):
            return False
        try:
            async with asyncio.timeout(timeout):   # wait_for would wrap the write in a task of its own
                await cluster.disks[disk_id].put_record(rec_id, data)
            return True
        except Exception as e:
            if is_full(repr(e)):    # a full disk is up: reads and deletes still work there
                cluster.mark_full(disk_id)
            else:
                cluster.mark_down(disk_id, f"record write failed: {e!r}")
            return False
    return rec_id, sum(await asyncio.gather(*(one(d) for d in disk_ids)))
