"""`pocket disk fail|drain|replace|restore` and `pocket rebalance` as one-shot commands.

The command does the work itself, running or stopped cluster alike (cluster.py opens
the disks next to a running gateway): it records the moves (disks/actions.py), runs them
(disks/moves.py), and for rebuild moves runs the repairer until the moved fragments are
rebuilt, so it ends with a summary of what moved and what could not. A running
gateway follows along through the volume table's generation; before old copies are
deleted the command waits until the gateway uses the new table. Interrupted, the
command is simply run again: the moves are in the index and resume from their phase.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..disks import actions
from ..disks.moves import MoveReport, SlotMover
from ..disks.restore import restore_disk
from ..durability.repair import Repairer
from ..index import repairs
from .cluster import ToolCluster, gateway_adopted


@dataclass
class Outcome:
    action: str
    disk: str | None
    planned: list[dict] = field(default_factory=list)
    unplaced: list[dict] = field(default_factory=list)
    moves: dict = field(default_factory=dict)          # MoveReport.as_dict()
    repair: dict = field(default_factory=dict)         # RepairReport.as_dict() of the rebuild
    left: list[dict] = field(default_factory=list)     # fragments still to rebuild onto new disks
    drained: list[str] = field(default_factory=list)
    disks: list[dict] = field(default_factory=list)    # `disk list` rows afterwards
    gateway_adopted: bool | None = None                # a running gateway reads with the final table

    @property
    def ok(self) -> bool:
        return not (self.unplaced or self.left or self.moves.get("failed"))

    def as_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


async def start(tc: ToolCluster, action: str, disk: str | None = None, new: str | None = None,
                dry_run: bool = False) -> Outcome:
    """Check and record the moves of one action (DiskError: refused, nothing changed)."""
    out = Outcome(action, disk)
    if action == "fail":
        out.planned, out.unplaced = await actions.declare_failed(tc.cluster, tc.queue, disk,
                                                               "declared failed by the operator")
    elif action == "drain":
        out.planned = await actions.start_drain(tc.cluster, tc.queue, disk)
    elif action == "replace":
        out.planned = await actions.start_replace(tc.cluster, tc.queue, disk, new)
    elif action == "rebalance":
        out.planned = await actions.start_rebalance(tc.cluster, tc.queue, dry_run)
    else:
        raise ValueError(action)
    return out


def work_size(tc: ToolCluster, out: Outcome) -> int:
    """Versions the command will visit (twice per copy move: copy, then catch-up and delete)."""
    moves = actions.pending(tc.index, out.disk if out.action != "rebalance" else None)
    _, counts = actions.volume_sizes(tc.index)
    return sum(counts[m["volume"]] * (2 if m["mode"] == "copy" else 1) for m in moves)


async def finish(tc: ToolCluster, out: Outcome, rate: float, step: Callable[[], None] | None = None) -> Outcome:
    """Run every unfinished move of the disk (all of them for a rebalance), then rebuild."""
    cfg = tc.cfg
    repairer = Repairer(tc.cluster, tc.index, tc.queue, cfg.repair.concurrency, cfg.storage.node_timeout)
    mover = SlotMover(tc.cluster, tc.index, tc.queue, repairer, rate, cfg.repair.move_settle,
                      adopted=lambda gen: gateway_adopted(cfg, gen), on_version=step)
    moves = actions.pending(tc.index, out.disk if out.action != "rebalance" else None)
    if out.unplaced:
        await mover.queue_fragments(actions.stranded(out.disk, out.unplaced))
    report: MoveReport = await mover.run(moves)
    rebuilt = {(m["volume"], m["slot"]) for m in report.done if m["mode"] == "rebuild"}
    if rebuilt:
        rep = await repairer.run_once(on_entry=lambda _entry: step and step())
        out.repair = rep.as_dict()
    out.left = _still_missing(tc, rebuilt)
    out.moves = report.as_dict()
    out.drained = await actions.settle_drained(tc.cluster, tc.queue)
    tc.cluster.refresh(tc.index)
    await actions.publish_table(tc.cluster, cfg.storage.node_timeout)
    # Rebuild moves switch slots without waiting for the gateway (nothing is deleted under
    # it), so it may still read from the lost disk for a heartbeat: the command returns
    # once it reads with the final table, so an operator who pulls more disks next meets
    # a gateway that already knows where every fragment is.
    out.gateway_adopted = await gateway_adopted(cfg, tc.cluster.generation, wait_uploads=False)
    out.disks = actions.disk_rows(tc.cluster, tc.index)
    return out


def _still_missing(tc: ToolCluster, slots: set[tuple[str, int]]) -> list[dict]:
    left = []
    with tc.index.read() as ops:
        for entry in repairs.iter_entries(ops):
            for i in set(entry["missing"]) | set(entry["corrupt"]):
                if (entry["volume"], i) in slots:
                    left.append({"bucket": entry["bucket"], "key": entry["key"], "version_id": entry["version_id"],
                                 "volume": entry["volume"], "slot": i, "last_error": entry["last_error"]})
    return left


async def restore(tc: ToolCluster, disk: str, wipe: bool) -> dict:
    """Return a failed or drained disk to service (disks/restore.py), tell the disks the new
    table, and wait until a running gateway uses it; the report has `disk list` rows."""
    report = await restore_disk(tc.cluster, tc.queue, disk, wipe)
    out = report.as_dict()
    if report.ok:
        await actions.publish_table(tc.cluster, tc.cfg.storage.node_timeout)
        out["gateway_adopted"] = await gateway_adopted(tc.cfg, report.generation)
    out["disks"] = actions.disk_rows(tc.cluster, tc.index)
    return out
