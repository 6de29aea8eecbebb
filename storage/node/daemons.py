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
        sc = cfg.scrub
        self.scrubbers = {disk_id: DiskScrubber(store, sc.rate, sc.interval, sc.start_delay, schedule=sc.enabled)
                          for disk_id, store in stores.items()}
        self.compactor = Compactor(stores, cfg.storage.compact_interval)

    def start(self) -> None:
        for scrubber in self.scrubbers.values():
            scrubber.start()
        self.compactor.start()

    async def stop(self) -> None:
        await self.compactor.stop()
        for scrubber in self.scrubbers.values():
            await scrubber.stop()
