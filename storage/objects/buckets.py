"""Buckets: kept in the index, and recorded on disks so an index rebuild finds them.

A bucket's creation and deletion are written as small records to the disks of the
first volume (the "system volume"), on a write quorum, before the index changes; the
rebuild replays them in id (time) order. Later configuration changes (CORS rules, the
canned ACL) are "bucket-config" records written the same way and replayed over the
bucket they name.
"""
from __future__ import annotations

from ..index.batcher import IndexWriter
from ..index.index import Index
from ..index.ops import BucketNotEmpty
from . import read_ahead


class BucketService:
    def __init__(self, index: Index, writer: IndexWriter, objects, multipart=None):
        self.index, self.writer, self.objects, self.multipart = index, writer, objects, multipart

    def _system_volume(self) -> dict:
        widest = max(v["width"] for v in self.objects.cluster.volumes.values())
        return min((v for v in self.objects.cluster.volumes.values() if v["width"] == widest),
                   key=lambda v: v["id"])

    def get(self, name: str) -> dict | None:
        record = read_ahead.bucket(name)
        if record is read_ahead.MISS:
            record = self.index.get_bucket(name)
            read_ahead.remember_bucket(name, record)
        return record

    async def aget(self, name: str) -> dict | None:
        """get for asyncio code: a bucket other than the request's (read ahead) is read through `index.call`."""
        record = read_ahead.bucket(name)
        return await self.index.call(self.index.get_bucket, name) if record is read_ahead.MISS else record

    def list(self) -> list[dict]:
        return self.index.list_buckets()

    async def create(self, name: str, record: dict) -> bool:
        policy = self.objects.policies[self.objects.default_policy]
        await self.objects.put_records(self._system_volume(), {"kind": "bucket", "name": name, **record},
                                       policy.quorum)
        read_ahead.forget_bucket(name)
        return await self.writer.submit(lambda ops: ops.create_bucket(name, {"name": name, **record}))

    async def configure(self, name: str, changes: dict) -> dict | None:
        """Merge `changes` into a bucket's record (a None value removes that field).

        The change is on a write quorum of the system volume's disks before the index
        sees it. Returns the new record, or None if the bucket is gone."""
        policy = self.objects.policies[self.objects.default_policy]
        await self.objects.put_records(self._system_volume(), {"kind": "bucket-config", "name": name,
                                                               "config": changes}, policy.quorum)
        read_ahead.forget_bucket(name)
        return await self.writer.submit(lambda ops: configure_bucket(ops, name, changes))

    async def delete(self, name: str) -> None:
        if not await self.index.call(self.index.bucket_is_empty, name):
            raise BucketNotEmpty(name)
        policy = self.objects.policies[self.objects.default_policy]
        await self.objects.put_records(self._system_volume(), {"kind": "bucket-deleted", "name": name},
                                       policy.quorum)
        read_ahead.forget_bucket(name)
        await self.writer.submit(lambda ops: ops.delete_bucket(name))
        if self.multipart:  # S3 drops a deleted bucket's unfinished uploads with it
            await self.multipart.abort_all(name)


def configure_bucket(ops, name: str, changes: dict) -> dict | None:
    """Apply a bucket-config change to the index record (also used by the rebuild)."""
    current = ops.get_bucket(name)
    if current is None:
        return None
    updated = apply_config(current, changes)
    ops.put_bucket(name, updated)
    return updated


def apply_config(record: dict, changes: dict) -> dict:
    updated = {**record, **{k: v for k, v in changes.items() if v is not None}}
    for k, v in changes.items():
        if v is None:
            updated.pop(k, None)
    return updated
