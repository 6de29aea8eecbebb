"""Moving a volume slot to another disk: the one engine behind fail, drain, replace and rebalance.

A slot move changes which disk holds fragment index `i` of every object version (and
part) written to one volume. Records name volumes, not disks, so no object record
changes; only the volume entry does (index/disks.py).

A *copy* move (the old disk is readable) keeps every GET whole throughout:

1. copy: for every version in the volume, copy archive `i` from the old disk to the new
   one (streamed, then read back and verified there); one that cannot be copied (missing
   or rotten on the old disk) is rebuilt onto the new disk from the other fragments.
   The volume still names the old disk, so readers and writers use it as before.
2. switch: one index transaction points the slot at the new disk and bumps the table's
   generation. Then wait until the running gateway (if any) has adopted it, plus a
   settle time for reads that started before the switch.
3. catch up and delete: versions written to the old disk while 1-2 ran (PUTs in flight
   held the old table) are copied too, then the old disk's archives are deleted. A
   reader still holding the old table finds nothing there and reads a parity fragment
   instead: degraded for a moment, never wrong (every fragment is checksummed).

A *rebuild* move (the old disk is failed) switches at once and queues every version of
the volume for repair of fragment `i`, in the repair queue's order (least redundancy
first); the repairer writes the new fragments while reads go degraded meanwhile.

Finding the versions of a volume is a scan of every object and open upload in the
index: O(objects) per move (rebuild moves of one disk share one scan). Fine for
millions of objects; at billions a volume -> version secondary index is the fix.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Awaitable, Callable

from .. import layout
from ..durability.queue import RepairQueue
from ..durability.sets import sets_in_volumes
from ..index import disks as disk_table
from ..index import repairs
from ..throttle import Throttle
from ..verify import CHUNK_BYTES, verify_archive

log = logging.getLogger("pocket.moves")

_QUEUE_BATCH = 500
HANDOVER = "handover"    # a switched copy move whose old copies only the gateway can delete


@dataclass
class MoveReport:
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    done: list[dict] = field(default_factory=list)      # {volume, slot, from, to, mode, versions, ...}
    failed: list[dict] = field(default_factory=list)    # {volume, slot, from, to, error}
    queued: int = 0                                     # versions queued for rebuild
    copied: int = 0
    rebuilt: int = 0
    bytes_copied: int = 0

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round((self.finished or time.time()) - self.started, 3)}


class SlotMover:
    """Runs moves recorded in the index; `adopted(generation)` waits for a running gateway."""

    def __init__(self, cluster, index, queue: RepairQueue, repairer, rate: float = 0.0, settle: float = 2.0,
                 adopted: Callable[[int], Awaitable[None]] | None = None,
                 on_version: Callable[[], None] | None = None):
        self.cluster, self.index, self.queue, self.repairer = cluster, index, queue, repairer
        self.pacer = Throttle(rate)
        self.settle = settle
        self.adopted = adopted
        self.on_version = on_version

    async def run(self, moves: list[dict], report: MoveReport | None = None) -> MoveReport:
        report = report or MoveReport()
        rebuilds = [m for m in moves if m["mode"] == "rebuild"]
        if rebuilds:
            await self.queue_rebuilds(rebuilds, report)
        for move in (m for m in moves if m["mode"] == "copy"):
            try:
                await self.copy(move, report)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("move of volume %s slot %d from %s to %s stopped: %s; run the command again to "
                          "resume it", move["volume"], move["slot"], move["from"], move["to"], e)
                report.failed.append({**_ident(move), "error": str(e) or repr(e)})
        report.finished = time.time()
        return report

    # rebuild moves ------------------------------------------------------------------------
    async def queue_rebuilds(self, moves: list[dict], report: MoveReport) -> None:
        """Queue fragment `slot` of every version in the moves' volumes for repair, then
        forget the moves. Re-running after a crash queues again: entries merge."""
        counts = await self.queue_fragments(
            [(m["volume"], m["slot"], f"disk {m['from']} failed; rebuilding onto {m['to']}") for m in moves])
        for m in moves:
            await self._write(lambda ops, m=m: disk_table.finish_move(ops, m))
            versions = counts[(m["volume"], m["slot"])]
            report.queued += versions
            report.done.append({**_ident(m), "mode": "rebuild", "versions": versions})
            log.info("volume %s slot %d moved from failed disk %s to %s: %d versions queued for rebuild",
                     m["volume"], m["slot"], m["from"], m["to"], versions)

    async def queue_fragments(self, slots: list[tuple[str, int, str]]) -> Counter:
        """Queue fragment `slot` of every version in each (volume, slot, why), with one
        scan of the index; returns versions queued per (volume, slot). Also used for the
        slots of a failed disk that have nowhere to go yet: the repairer leaves them
        waiting, and `pocket status` counts their objects at risk."""
        wanted: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for volume_id, slot, why in slots:
            wanted[volume_id].append((slot, why))
        batch: list[tuple[dict, int, str]] = []
        counts: Counter = Counter()

        async def flush():
            now = time.time()
            rows = list(batch)
            batch.clear()
            await self._write(lambda ops: [repairs.add(ops, s, {i: ("missing", why)}, "replace", now)
                                           for s, i, why in rows])
            self.queue.wakeup.set()
        n = 0
        async for s in sets_in_volumes(self.index, set(wanted)):
            n += 1
            for slot, why in wanted[s["volume"]]:
                batch.append((s, slot, why))
                counts[(s["volume"], slot)] += 1
            if len(batch) >= _QUEUE_BATCH:
                await flush()
            if n % 1000 == 0:
                await asyncio.sleep(0)
        if batch:
            await flush()
        return counts

    # copy moves ---------------------------------------------------------------------------
    async def copy(self, move: dict, report: MoveReport) -> None:
        row = {**_ident(move), "mode": "copy", "versions": 0, "copied": 0, "rebuilt": 0, "deleted": 0,
               "kept": 0}
        if move["phase"] == "copying":
            await self._fill(move, row, report, delete=False)
            gen = await self._write(lambda ops: _switch(ops, move))
            move = {**move, "phase": "switched", "generation": gen}
            log.info("volume %s slot %d now on %s (was %s)", move["volume"], move["slot"], move["to"], move["from"])
            if self.adopted:
                await self.adopted(gen)
            await asyncio.sleep(self.settle)
            await self.cluster.arefresh(self.index)
        row["versions"] = 0
        problems = await self._fill(move, row, report, delete=True)
        if problems:
            raise RuntimeError(f"{problems} versions could neither be copied nor rebuilt onto {move['to']}")
        report.done.append(row)
        if row["kept"]:
            # e.g. small archives in the pack files of a disk the gateway process owns: the
            # slot has moved, only cleanup is left, and the gateway can do it (failures.py)
            await self._write(lambda ops: disk_table.put_move(ops, {**move, "phase": HANDOVER}))
            log.warning("%d old copies on %s could not be deleted from here; the gateway removes them (now if it "
                        "runs, else at its next start)", row["kept"], move["from"])
            return
        await self._write(lambda ops: disk_table.finish_move(ops, move))

    async def _fill(self, move: dict, row: dict, report: MoveReport, delete: bool) -> int:
        """Make sure every version of the volume has fragment `slot` on the new disk;
        with `delete`, then remove it from the old disk. Returns how many failed."""
        i, old_id, new_id = move["slot"], move["from"], move["to"]
        old, new = self.cluster.disks[old_id], self.cluster.disks[new_id]
        volume = self.cluster.volumes[move["volume"]]
        target = {**volume, "disks": [new_id if j == i else d for j, d in enumerate(volume["disks"])]}
        problems = 0
        marks: list[tuple[str, float]] = []   # (version id, when): fragments `i` this move wrote
        async for s in sets_in_volumes(self.index, {move["volume"]}):   # short chunks, never all at once
            row["versions"] += 1
            name = layout.archive_name(s["version_id"], i)
            old_size = await _stat(old, name) if self.cluster.is_up(old_id) else None
            have = await _stat(new, name)
            if have is None or (old_size is not None and have != old_size):
                try:
                    if old_size is not None and await self._copy_one(old, new, name, old_size):
                        row["copied"] += 1
                        report.copied += 1
                        report.bytes_copied += old_size
                    else:
                        written = await self.repairer.rebuild_fragments(s, target, {i})
                        if i not in written:
                            raise RuntimeError("the new disk did not commit it")
                        row["rebuilt"] += 1
                        report.rebuilt += 1
                    marks.append((s["version_id"], time.time()))
                    if len(marks) >= _QUEUE_BATCH:
                        await self._mark_written(marks, i)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    problems += 1
                    log.warning("could not move %s from %s to %s: %s", name, old_id, new_id, e)
                    continue
            if delete and old_size is not None:
                try:
                    row["deleted"] += bool(await old.delete_archive(name))
                except Exception as e:
                    row["kept"] += 1
                    log.warning("could not delete the old copy of %s from %s: %r", name, old_id, e)
            if self.on_version:
                self.on_version()
        await self._mark_written(marks, i)
        return problems

    async def _mark_written(self, written: list[tuple[str, float]], i: int) -> None:
        """Record fragments `i` that this move wrote (copied and checked, or rebuilt) as the
        repairer records its own (repairs.resolve): a scrub finding gathered before then is
        about the bytes they replaced, and must not queue them again (repairs.add's `seen`);
        without the marks a pass that had looked at a rotten fragment just before the move
        rewrote it queued a second, needless rebuild and reported it corrupt. Batched: one
        index commit per _QUEUE_BATCH fragments, not one each."""
        if written:
            rows = list(written)
            written.clear()
            await self._write(lambda ops: [repairs.resolve(ops, vid, {i}, at) for vid, at in rows])

    async def _copy_one(self, old, new, name: str, size: int) -> bool:
        """Stream one archive across and check the copy whole; False if the source is bad."""
        async def chunks():
            for offset in range(0, size, CHUNK_BYTES):
                data = await old.read(name, offset, min(CHUNK_BYTES, size - offset))
                await self.pacer.take(len(data))
                yield data
        try:
            await new.put_archive(name, chunks())
        except (FileNotFoundError, layout.CorruptFragment) as e:
            log.info("%s on the old disk is unusable (%s); rebuilding it instead", name, e)
            return False
        verdict = await verify_archive(new, name, size, Throttle(0))
        if verdict.problem:
            log.warning("copy of %s is bad (%s): the old disk's archive is rotten; rebuilding it", name,
                        verdict.problem)
            await new.delete_archive(name)
            return False
        return True

    async def _write(self, fn):
        return await self.queue.write(fn)


def _switch(ops, move: dict) -> int:
    gen = disk_table.switch_slot(ops, move["volume"], move["slot"], move["from"], move["to"])
    disk_table.put_move(ops, {**move, "phase": "switched", "generation": gen})
    return gen


async def _stat(disk, name: str) -> int | None:
    try:
        return await disk.stat(name)
    except Exception:
        return None


def _ident(move: dict) -> dict:
    return {k: move[k] for k in ("volume", "slot", "from", "to")}
