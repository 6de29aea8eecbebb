"""The repair queue as the gateway and the one-shot commands use it.

Entries live in the LMDB index (see storage/index/repairs.py for the key order and the
entry format). Writes go through the group-commit `IndexWriter` (the gateway's, or the
one-shot command's own), so a burst of damaged reads or of finished repairs costs one
fsync; a queue made without a writer (unit tests) commits each change itself. A gateway
and a one-shot command (`pocket scrub`, `pocket repair`) may run at once:
LMDB serialises writers across processes, and every change here is one short
transaction that re-reads the entry it changes, so neither overwrites the other's news.

The queue also keeps the scrubber's and repairer's last progress in the index's meta
table, which is how `pocket status` reports them from any process.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, Callable

from ..index import repairs
from ..index.batcher import IndexWriter
from ..index.index import Index
from ..objects.contracts import VersionRecord

log = logging.getLogger("pocket.repair")

SCRUB_META = "durability.scrub"
REPAIR_META = "durability.repair"


class RepairQueue:
    def __init__(self, index: Index, writer: IndexWriter | None = None):
        self.index = index
        self.writer = writer
        self.wakeup = asyncio.Event()   # set when something is queued; the repairer waits on it
        self._pending: set[asyncio.Task] = set()

    async def write(self, fn: Callable) -> Any:
        """Commit `fn(ops)` the way this process does: through its index writer if it has one
        (repairs, slot moves, disk states, finished deletes)."""
        if self.writer is not None:
            return await self.writer.submit(fn)
        return await asyncio.get_running_loop().run_in_executor(None, self.index.write, fn)

    # changes -----------------------------------------------------------------------------
    async def add(self, record: VersionRecord, bad: dict[int, tuple[str, str]], source: str,
                  seen: dict[int, float] | None = None) -> dict | None:
        """Queue damage; with `seen`, none that a repair finished since (repairs.add)."""
        now = time.time()
        entry = await self.write(lambda ops: repairs.add(ops, record, bad, source, now, seen))
        if entry is not None:
            log.debug("repair queued for %s/%s version %s: missing %s, corrupt %s (%s)", record["bucket"],
                      record["key"], record["version_id"], entry["missing"], entry["corrupt"], source)
            self.wakeup.set()
        return entry

    def add_later(self, record: VersionRecord, bad: dict[int, tuple[str, str]], source: str) -> None:
        """For synchronous callers (a read's damage callback): queue in the background."""
        task = asyncio.ensure_future(self.add(record, bad, source))
        self._pending.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not queue a repair: %r; the next scrub will find the damage again",
                      task.exception())

    async def resolve(self, version_id: str, indexes) -> dict | None:
        """Take fragments off the queue that were rebuilt or found whole, remembering when."""
        now = time.time()
        return await self.write(lambda ops: repairs.resolve(ops, version_id, indexes, now))

    async def forget_repairs(self) -> int:
        now = time.time()
        return await self.write(lambda ops: repairs.forget_repairs(ops, now))

    async def note_failure(self, version_id: str, error: str) -> None:
        now = time.time()
        await self.write(lambda ops: repairs.note_failure(ops, version_id, error, now))

    async def drop(self, version_id: str) -> bool:
        return await self.write(lambda ops: repairs.drop(ops, version_id))

    async def save_progress(self, name: str, value: dict) -> None:
        await self.write(lambda ops: ops.put_meta(name, value))

    async def drain(self) -> None:
        """Wait for background additions (used on shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    # reads -------------------------------------------------------------------------------
    def entries(self, limit: int | None = None) -> list[dict]:
        with self.index.read() as ops:
            return repairs.scan(ops, limit)

    def get(self, version_id: str) -> dict | None:
        with self.index.read() as ops:
            return repairs.get(ops, version_id)

    def length(self) -> int:
        with self.index.read() as ops:
            return repairs.length(ops)

    def at_risk(self) -> dict[str, dict[int, int]]:
        """Queued objects per policy shape ("4+2") by fragments left, e.g. {"4+2": {5: 3, 4: 1}}."""
        groups: dict[str, Counter] = {}
        with self.index.read() as ops:
            for entry in repairs.iter_entries(ops):
                shape = f"{entry['k']}+{entry['m']}"
                groups.setdefault(shape, Counter())[repairs.fragments_left(entry)] += 1
        return {shape: dict(sorted(c.items())) for shape, c in groups.items()}

    def progress(self, name: str) -> dict | None:
        return self.index.get_meta(name)
