"""Background pack compaction for the disks one process owns (a node, or the gateway's
in-process disks under `pocket up`).

Deletes and overwrites leave dead records in pack files; every `interval` seconds each
disk rewrites the packs that are less than half live into its newest pack and removes
them (DiskStore.compact, pack_compaction.py). One disk at a time, so compaction never competes with itself
for the machine.
"""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("pocket.compactor")


class Compactor:
    def __init__(self, stores: dict, interval: float, min_live: float = 0.5):
        self.stores = stores
        self.interval = interval
        self.min_live = min_live
        self.passes = self.packs = self.reclaimed = 0
        self._task: asyncio.Task | None = None

    async def run_once(self) -> dict[str, dict]:
        results = {}
        for disk_id, store in self.stores.items():
            try:
                results[disk_id] = report = await store.compact(self.min_live)
            except Exception as e:
                log.error("compaction of disk %s failed: %r; will try again next pass", disk_id, e)
                continue
            self.packs += report["packs"]
            self.reclaimed += report["removed"] - report["copied"]
            if report["packs"]:
                log.info("disk %s: compacted %d packs, %d bytes reclaimed", disk_id, report["packs"],
                         report["removed"] - report["copied"])
        self.passes += 1
        return results

    def start(self) -> None:
        if self.interval > 0 and self.stores and self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.run_once()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
