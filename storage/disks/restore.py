"""`pocket disk restore DISK`: a failed or drained disk returns to service.

A disk is failed when it stopped answering (or an operator said so) and drained when an
operator moved everything off it. Either way its slots went to other disks, so what is
still on it is stale: a version deleted or overwritten since, or a fragment that was
rebuilt elsewhere. Serving or counting those would resurrect deleted data or mix stale
fragments into reads, so before the disk takes any slot again:

1. check: it answers, through the process that owns its folder (which opened it only
   because the folder's marker names this disk id), and it can be listed;
2. clean: every archive on it that no live slot references is deleted (all of them with
   `wipe`). A failed disk whose slots had nowhere to go still holds them; its archives
   for those slots are kept, and each is read back whole (verify.py): a bad one, or one
   wiped, is queued for repair;
3. return: one index transaction takes it out of the failed/drained state and bumps the
   volume table's generation, so a running gateway picks it up at its next heartbeat.

The disk then holds no slots (or only its stranded ones); `pocket rebalance` gives it
some. Cleaning happens while the disk is still out of service, so no upload writes there
meanwhile. Run again after a failure: every step is idempotent.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

from ..durability.sets import sets_in_volumes
from ..index import disks as disk_table
from ..node.packs import PacksOwnedElsewhere
from ..throttle import Throttle
from ..verify import verify_archive
from .actions import DiskError, check_disk, pending

log = logging.getLogger("pocket.disks")

RESTORABLE = (disk_table.FAILED, disk_table.DRAINED)


@dataclass
class RestoreReport:
    disk: str
    was: str = ""
    wiped: bool = False
    archives: int = 0                                   # on the disk when it was listed
    removed: int = 0                                    # stale (or wiped) archives deleted
    kept: list[str] = field(default_factory=list)       # live fragments of its stranded slots
    queued: int = 0                                     # versions queued for repair
    left: list[dict] = field(default_factory=list)      # stale archives that could not be deleted
    generation: int = -1

    @property
    def ok(self) -> bool:
        return not self.left

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _refuse_unless_restorable(cluster, index, disk_id: str) -> str:
    check_disk(cluster, disk_id)
    state = cluster.state(disk_id)
    if state == disk_table.DRAINING:
        raise DiskError(f"{disk_id} is still draining; run `pocket disk drain {disk_id}` to finish, then restore it")
    if state not in RESTORABLE:
        raise DiskError(f"{disk_id} is {state}, not failed or drained: it is in service already")
    moving = [m for m in pending(index, disk_id)]
    if moving:
        raise DiskError(f"{disk_id} has {len(moving)} slot moves unfinished; run `pocket disk "
                        f"{'fail' if state == disk_table.FAILED else 'drain'} {disk_id}` again to finish them first")
    return state


async def _check_answers(disk, disk_id: str) -> list[tuple[str, int]]:
    try:
        await disk.health()
        return [item async for item in disk.iter_archives()]
    except Exception as e:
        raise DiskError(f"{disk_id} does not answer or cannot be listed ({e!r}); mount it and start its node "
                        "(the folder must hold its pocket-disk.json), then run this again. Nothing was changed.") \
            from None


async def _its_slots(cluster, index, disk_id: str) -> dict[tuple[str, int], dict]:
    """(version id, fragment index) of every live fragment whose slot is on this disk."""
    out = {}
    volumes = {v["id"] for v in cluster.volumes.values() if disk_id in v["disks"]}
    async for s in sets_in_volumes(index, volumes):
        for i, d in enumerate(cluster.volumes[s["volume"]]["disks"]):
            if d == disk_id:
                out[(s["version_id"], i)] = s
    return out


async def restore_disk(cluster, queue, disk_id: str, wipe: bool = False) -> RestoreReport:
    """Check, clean and return one failed or drained disk to service (DiskError: refused)."""
    report = RestoreReport(disk_id, was=_refuse_unless_restorable(cluster, queue.index, disk_id), wiped=wipe)
    disk = cluster.disks[disk_id]
    listing = await _check_answers(disk, disk_id)
    report.archives = len(listing)
    live = await _its_slots(cluster, queue.index, disk_id)
    damaged: dict[str, tuple[dict, dict]] = {}
    for name, size in listing:
        vid, _, idx = name.partition(".")
        record = live.get((vid, int(idx)))
        if record is not None and not wipe:
            verdict = await verify_archive(disk, name, size, Throttle(0))
            if verdict.problem is None:
                report.kept.append(name)
                continue
            log.warning("restore %s: its archive %s is bad (%s); deleting it, the repairer rebuilds it",
                        disk_id, name, verdict.problem)
        try:
            report.removed += bool(await disk.delete_archive(name))
        except PacksOwnedElsewhere:
            report.left.append({"archive": name, "why": "packed on a disk the running gateway owns (`pocket up` "
                                                        "without nodes); stop it and run this again"})
            continue
        except Exception as e:
            report.left.append({"archive": name, "why": repr(e)})
            continue
        if record is not None:
            damaged.setdefault(vid, (record, {}))[1][int(idx)] = ("missing", f"disk {disk_id} restored "
                                                                            f"{'wiped' if wipe else 'with it bad'}")
    for record, bad in damaged.values():
        await queue.add(record, bad, "restore")
    report.queued = len(damaged)
    if report.left:
        log.error("restore %s: %d stale archives could not be deleted (first: %s, %s); the disk stays %s. Fix "
                  "that and run `pocket disk restore %s` again", disk_id, len(report.left),
                  report.left[0]["archive"], report.left[0]["why"], report.was, disk_id)
        return report

    def back_in_service(ops):
        if disk_table.states(ops).get(disk_id, {}).get("state") != report.was:
            raise DiskError(f"{disk_id} changed state meanwhile; look at `pocket disk list` and try again")
        disk_table.set_state(ops, disk_id, None, "restored", time.time())
        return disk_table.generation(ops)
    report.generation = await queue.write(back_in_service)
    await cluster.arefresh(queue.index)
    log.info("disk %s restored (was %s%s): %d stale archives removed, %d kept for its slots; it is in service "
             "with no new slots: run `pocket rebalance` to move data onto it", disk_id, report.was,
             ", wiped" if wipe else "", report.removed, len(report.kept))
    return report
