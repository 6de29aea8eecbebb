"""Uploads in progress across every worker process of one gateway (storage/workers.py).

A slot move deletes the old disk's copies only once no upload that chose its volume
under an older volume table is still writing (disks/moves.py): `Cluster.oldest_write()`
answers that for one process. With several workers each knows only its own uploads, and
`/_pocket/ready` (what `pocket disk ...` polls) or the failed-disk watcher may run in
any of them. So every worker writes, each heartbeat right after it reloaded the table,
a row `writes/<holder>` to the index: the table generation it uses and the oldest one
an upload of its own still uses; and reads its siblings' rows. The gateway's answer is
the minimum over its workers, so it can only be older (safer) than the truth, never
newer. A row not rewritten for `stale_after` seconds is a worker that is gone (its
uploads died with it) and no longer counts.

The row also says whether the worker itself is ready (enough disks up, not draining):
`/_pocket/ready` answers for whichever worker accepted the probe, and says ready only when
every live worker of the gateway was at its last beat, so a client sent on by a ready
answer does not meet a sibling that has not yet seen the disks come back. A sibling not
yet heard from in this run of the gateway (`run`: rows of an earlier run, restarted
within `stale_after`, look fresh) counts as not ready: it would start serving after the
probe was answered, possibly with disks it had not yet reached marked down.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("pocket.shared_writes")

PREFIX = "writes/"


class SharedWrites:
    def __init__(self, cluster, index, writer, me: str, siblings: list[str], stale_after: float,
                 own_ready=lambda: True, clock=time.time, run: str = ""):
        """`clock`: wall-clock seconds (rows are compared across processes); a test passes its own
        to age a sibling's row past `stale_after` without waiting. `run`: the same for every
        worker of one start of the gateway, different at the next."""
        self.cluster, self.index, self.writer, self.own_ready = cluster, index, writer, own_ready
        self.clock = clock
        self.me, self.siblings, self.stale_after = me, [s for s in siblings if s != me], stale_after
        self._generation: int | None = None   # the siblings' minimum, from the last beat
        self._oldest: int | None = None
        self.run = run
        self._heard: set[str] = set()   # siblings that wrote a row in this run
        self.siblings_ready = not self.siblings

    def volume_generation(self) -> int:
        """The oldest volume table a worker of this gateway uses."""
        mine = self.cluster.generation
        return mine if self._generation is None else min(mine, self._generation)

    def oldest_write(self) -> int:
        """The oldest table an upload in progress in any worker of this gateway uses."""
        mine = self.cluster.oldest_write()
        return mine if self._oldest is None else min(mine, self._oldest)

    def _siblings_rows(self) -> list:
        with self.index.read() as ops:
            return [ops.get_meta(PREFIX + s) for s in self.siblings]

    async def beat(self) -> None:
        """Publish this worker's view and read the siblings' (called after each table refresh)."""
        if not self.siblings:
            return
        mine = {"generation": self.cluster.generation, "oldest": self.cluster.oldest_write(), "at": self.clock(),
                "ready": self.own_ready(), "run": self.run}
        await self.writer.submit(lambda ops: ops.put_meta(PREFIX + self.me, mine))
        rows = await self.index.call(self._siblings_rows)
        now = self.clock()
        live = [r for r in rows if r and now - r["at"] < self.stale_after]
        self._generation = min((r["generation"] for r in live), default=None)
        self._oldest = min((r["oldest"] for r in live), default=None)
        self._heard.update(s for s, r in zip(self.siblings, rows) if r and r.get("run") == self.run)
        self.siblings_ready = len(self._heard) == len(self.siblings) and \
            all(r.get("ready", True) for r in live if r.get("run") == self.run)
