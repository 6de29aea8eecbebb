"""The gateway's view of the cluster: every disk, whether it answers, and the volumes.

Liveness comes from two sources: a heartbeat that asks every disk for its usage every
few seconds, and the data path, which marks a disk down the moment a request to it
fails. Placement prefers volumes whose disks are all up; reads skip down disks.
"""
from __future__ import annotations

import asyncio
import logging
import time

from .placement.volumes import DiskInfo, build_volumes

log = logging.getLogger("pocket.cluster")


class Cluster:
    def __init__(self, disks: dict, infos: list[DiskInfo], heartbeat: float = 2.0, min_free_bytes: int = 0):
        self.disks = disks                 # disk id -> DiskStore | RemoteDisk
        self.infos = {d.disk_id: d for d in infos}
        self.volumes: dict[str, dict] = {}
        self.usage: dict[str, dict] = {}
        self._down_since: dict[str, float] = {}
        self._heartbeat = heartbeat
        self.min_free_bytes = min_free_bytes
        self._task: asyncio.Task | None = None

    def load_volumes(self, index, widths: set[int]) -> None:
        """Use the volume table in the index; create volumes for widths that have none."""
        volumes = index.get_volumes()
        have = {v["width"] for v in volumes}
        missing = sorted(widths - have)
        for width in missing:
            volumes += build_volumes(list(self.infos.values()), width)
        if missing:
            index.put_volumes(volumes)
        unknown = {d for v in volumes for d in v["disks"]} - set(self.disks)
        if unknown:
            raise RuntimeError(f"the index names disks {sorted(unknown)} that are not in the config; "
                               "restore them to the config (or replace them) before starting")
        self.volumes = {v["id"]: v for v in volumes}

    def is_up(self, disk_id: str) -> bool:
        return disk_id not in self._down_since

    def mark_down(self, disk_id: str, reason: str) -> None:
        if disk_id not in self._down_since:
            log.warning("disk %s marked down: %s; reads go degraded, writes avoid it", disk_id, reason)
            self._down_since[disk_id] = time.monotonic()

    def has_room(self, disk_id: str) -> bool:
        """False once the disk's free space is below the reserve (from the last heartbeat,
        or at once when a write failed with ENOSPC); unknown usage counts as room."""
        usage = self.usage.get(disk_id)
        return usage is None or usage.get("free", 0) >= max(self.min_free_bytes, 1)

    def is_writable(self, disk_id: str) -> bool:
        return self.is_up(disk_id) and self.has_room(disk_id)

    def mark_full(self, disk_id: str) -> None:
        log.warning("disk %s is full; new archives go elsewhere until it has %d bytes free again",
                    disk_id, self.min_free_bytes)
        self.usage[disk_id] = {**self.usage.get(disk_id, {}), "free": 0}

    def mark_up(self, disk_id: str) -> None:
        if self._down_since.pop(disk_id, None) is not None:
            log.info("disk %s is back up", disk_id)

    def down_disks(self) -> dict[str, float]:
        now = time.monotonic()
        return {d: now - t for d, t in self._down_since.items()}

    async def check_once(self) -> None:
        async def probe(disk_id, disk):
            try:
                self.usage[disk_id] = await asyncio.wait_for(disk.health(), self._heartbeat * 2)
                self.mark_up(disk_id)
            except Exception as e:  # any failure to answer is "down" to placement
                self.mark_down(disk_id, f"heartbeat failed: {e!r}")
        await asyncio.gather(*(probe(i, d) for i, d in self.disks.items()))

    async def _loop(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._heartbeat)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
