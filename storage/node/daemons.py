"""The background work of the disks one process owns: scrub and pack compaction.

A node process owns its disks; under `pocket up` the gateway process owns the disks it
opens itself. Both start the same daemons through this class, so an in-process disk is
scrubbed and compacted exactly like a node's.
"""
from __future__ import annotations

from ..config import Config
from .compactor import Compactor
from .disk_scrub import DiskScrubber


class DiskDaemons:
    def __init__(self, stores: dict, cfg: Config):
        self.stores = stores
        self._scrub = cfg.scrub
        self.scrubbers = {disk_id: self._scrubber(store) for disk_id, store in stores.items()}
        self.compactor = Compactor(stores, cfg.storage.compact_interval)

    def _scrubber(self, store) -> DiskScrubber:
        sc = self._scrub
        return DiskScrubber(store, sc.rate, sc.interval, sc.start_delay, schedule=sc.enabled)

    def add(self, stores: dict) -> None:
        """Disks opened after start (added to the config, then given slots): scrub them too.
        The compactor walks `self.stores`, which the caller has already updated."""
        for disk_id, store in stores.items():
            if disk_id not in self.scrubbers:
                self.scrubbers[disk_id] = self._scrubber(store)
                self.scrubbers[disk_id].start()

    def start(self) -> None:
        for scrubber in self.scrubbers.values():
            scrubber.start()
        self.compactor.start()

    async def stop(self) -> None:
        await self.compactor.stop()
        for scrubber in self.scrubbers.values():
            await scrubber.stop()
