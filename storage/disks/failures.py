"""The gateway's failure watcher: a disk down longer than `repair.failed_after` is failed.

A disk that stops answering is first only *down*: reads go degraded, writes avoid it,
and its fragments wait for it to come back (a reboot, a cable, a node restart). Past
the grace period it is declared failed (actions.py): the state is kept in the index, so a
restarted gateway remembers it, and its slots switch to replacement disks while the
repairer rebuilds their fragments. The watcher also finishes moves left unfinished by a
crash: rebuild moves are queued again (the queue merges entries), and a draining disk
whose last slot has moved becomes drained. Copy moves are the command's to resume,
except the deletion of old copies a command could not delete itself (small archives in
the pack files of disks this process owns, e.g. `pocket up` without node processes).
"""
from __future__ import annotations

import logging

from ..index import disks as disk_table
from ..leased import every
from . import actions
from .moves import HANDOVER, SlotMover

log = logging.getLogger("pocket.disks")


class FailureWatcher:
    def __init__(self, cluster, queue, mover: SlotMover, failed_after: float, oldest_write=None):
        """`oldest_write`: the oldest table an upload in progress uses, across every worker
        process of this gateway (shared_writes.py); this process's own by default."""
        self.cluster, self.queue, self.mover = cluster, queue, mover
        self.failed_after = failed_after
        self.oldest_write = oldest_write or cluster.oldest_write

    async def run_once(self) -> list[str]:
        """Declare what has been down too long; resume rebuild moves. Returns disks declared."""
        declared = []
        down = {d: s for d, s in self.cluster.down_disks().items() if self.cluster.state(d) != disk_table.FAILED}
        if len(down) > len(self.cluster.disks) // 2:
            log.error("%d of %d disks are down at once (%s): that looks like a network or gateway problem, not "
                      "dead disks, so none is declared failed automatically; `pocket disk fail DISK` does it",
                      len(down), len(self.cluster.disks), ", ".join(sorted(down)))
            down = {}
        for disk_id, seconds in sorted(down.items()):
            if seconds < self.failed_after:
                continue
            if not actions.slots_of(self.cluster, disk_id):
                continue            # holds nothing (drained, or replaced already): nothing to rebuild
            _, unplaced = await actions.declare_failed(self.cluster, self.queue, disk_id,
                                                     f"down for {seconds:.0f}s, more than repair.failed_after = "
                                                     f"{self.failed_after:g}s")
            if unplaced:
                await self.mover.queue_fragments(actions.stranded(disk_id, unplaced))
            declared.append(disk_id)
        moves = await self.queue.index.call(actions.pending, self.queue.index)
        rebuilds = [m for m in moves if m["mode"] == "rebuild"]
        # old copies a command could not delete (packs this process owns), once no upload
        # that chose its volume under the old table is still writing here
        handed = [m for m in moves if m["phase"] == HANDOVER and self.oldest_write() >= m.get("generation", 0)]
        if rebuilds or handed:
            await self.mover.run(rebuilds + handed)
        await actions.settle_drained(self.cluster, self.queue)
        return declared

    async def run_forever(self, interval: float) -> None:
        await every(interval, self.run_once, "failure watcher round", wait_first=True)
