"""The gateway's retry loop for writes owed to one side of a migrating bucket.

Each entry names a key and the side that missed a write (index/migrations.py); a retry
makes that side's key equal to the authoritative side's current state (sync.py), under
the key's lock, and looks again until both sides agree (a request through another gateway
worker, which holds its own locks, may have written the key meanwhile). A failed retry waits longer each time (doubling, capped), never gives up
and is never dropped: only success removes an entry, and `detach` (which ends mirroring
to the source). Backlog blocks cutover and rollback (commands.py).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from ..index import migrations
from ..leased import every
from .routes import KeyLocks, Routes
from .sync import copy_from_source, copy_to_source

log = logging.getLogger("pocket.migrate")

BACKOFF_FIRST = 0.5     # seconds before the first retry of an entry
# The longest wait between two tries of one entry. POCKET_MIGRATE_RETRY_CAP lowers it where
# a side comes back within seconds and a minute's wait is only idle time (the tests).
BACKOFF_CAP = float(os.environ.get("POCKET_MIGRATE_RETRY_CAP") or 60.0)
BATCH = 64
SYNC_ROUNDS = 4         # copies of one entry in one try before it waits its backoff


@dataclass
class RetryReport:
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def backoff(attempts: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** attempts)


class JournalRunner:
    def __init__(self, objects, multipart, writer, routes: Routes, locks: KeyLocks, metrics=None):
        self.objects, self.multipart, self.writer = objects, multipart, writer
        self.routes, self.locks, self.metrics = routes, locks, metrics

    async def run_once(self, buckets: list[str] | None = None, all_due: bool = False) -> RetryReport:
        """Retry every entry that is due (all of them with `all_due`) of the migrating buckets."""
        report = RetryReport()
        for m in await self.routes.aall():
            if buckets is not None and m.bucket not in buckets:
                continue
            entries = await self.objects.index.call(self._due, m.bucket, all_due)
            if not entries:   # most passes: no source client made for a bucket with nothing to retry
                continue
            store = self.routes.store(m)
            for entry in entries:
                await self._retry(m.bucket, store, entry, report)
        return report

    def _due(self, bucket: str, all_due: bool) -> list[dict]:
        with self.objects.index.read() as ops:
            return migrations.journal(ops, bucket, limit=BATCH, due_by=None if all_due else time.time())

    async def _retry(self, bucket: str, store, entry: dict, report: RetryReport) -> None:
        key, side, seq = entry["key"], entry["side"], entry["seq"]
        try:
            async with self.locks.hold(bucket, key):
                outcome = await self._converge(bucket, store, key, side)
            await self.writer.submit(lambda ops: migrations.journal_done(ops, bucket, seq))
        except Exception as e:
            wait, error = backoff(entry["attempts"]), str(e)[:500]
            await self.writer.submit(lambda ops: migrations.journal_failed(ops, bucket, seq, error,
                                                                           time.time() + wait))
            report.failed += 1
            report.errors.append(f"{bucket}/{key} -> {side}: {e}")
            if self.metrics:
                self.metrics.retries.labels(bucket, "failed").inc()
            log.warning("retry %d of the write of %s/%s owed to %s failed (%s); next try in %.1fs",
                        entry["attempts"] + 1, bucket, key, side, e, wait)
            return
        report.done += 1
        if self.metrics:
            self.metrics.retries.labels(bucket, "done").inc()
        log.info("the write of %s/%s owed to %s is applied (%s) after %d failed tries", bucket, key, side,
                 outcome, entry["attempts"] + 1)

    async def _converge(self, bucket: str, store, key: str, side: str) -> str:
        """Copy the leader's current state of `key` to `side` until a look finds them equal
        ("same"): the key's lock is this process's, and a request through another gateway
        worker may write the key while the copy is on its way, landing before it. Returns the
        first look's outcome; raises (retried later) if they still differ after SYNC_ROUNDS."""
        first = None
        for _ in range(SYNC_ROUNDS):
            if side == "pocket":
                outcome = await copy_from_source(self.objects, self.multipart, store, bucket, key)
            else:
                outcome = await copy_to_source(self.objects, store, bucket, key)
            first = first or outcome
            if outcome == "same":
                return first
        raise RuntimeError(f"{key} was written again during each of {SYNC_ROUNDS} copies to {side}")

    async def run_forever(self, interval: float = 1.0) -> None:
        await every(interval, self.run_once, "migration journal pass")
