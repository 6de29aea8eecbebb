"""Disk states, slot moves and the volume-table generation, kept in the index.

The volume table (the `volumes` DB) says which disk holds each fragment index of each
volume. It changes when a disk fails, is drained or replaced, or when the cluster grows
or is rebalanced, and it may be changed by a one-shot command next to a running
gateway. So every change is one short transaction that re-reads what it changes
(compare-and-swap on the slot's current disk) and bumps a generation number in the
meta table; gateways compare that number every heartbeat and reload the table when it
moved, without restarting.

Meta keys:
    "volumes.generation"  int, bumped by every change of the table or of disk states
    "disks.states"        {disk_id: {"state": "failed"|"draining"|"drained", "since", "reason"}}
                          (a disk not listed is in service; up/down is liveness, not stored)
    "volumes.moves"       {"<volume>/<slot>": move}: slot moves not finished yet

A move: {"volume", "slot", "from", "to", "mode": "copy"|"rebuild", "phase", "reason",
"created"}. A "copy" move (drain, replace, rebalance of a readable disk) copies the
fragment index of every version in the volume to the new disk while the volume still
names the old one (phase "copying"), then switches the slot (phase "switched"), then
catches up and deletes the old archives. A "rebuild" move (the old disk is failed)
switches at once and queues every version of the volume for repair (phase "switched"
until all are queued). Both are resumable from their phase after a crash.
"""
from __future__ import annotations

from .ops import IndexTxn

GENERATION = "volumes.generation"
STATES = "disks.states"
MOVES = "volumes.moves"

FAILED, DRAINING, DRAINED = "failed", "draining", "drained"
OUT_OF_SERVICE = (FAILED, DRAINING, DRAINED)   # never chosen to take new slots


class SlotChanged(RuntimeError):
    """The slot no longer holds the disk the caller expected: someone else moved it."""


def move_key(volume_id: str, slot: int) -> str:
    return f"{volume_id}/{slot}"


def generation(ops: IndexTxn) -> int:
    return ops.get_meta(GENERATION, 0)


def bump(ops: IndexTxn) -> int:
    gen = generation(ops) + 1
    ops.put_meta(GENERATION, gen)
    return gen


def states(ops: IndexTxn) -> dict[str, dict]:
    return ops.get_meta(STATES, {})


def set_state(ops: IndexTxn, disk_id: str, state: str | None, reason: str, now: float) -> dict | None:
    """Record a disk's state (None: back in service); returns the previous one."""
    current = states(ops)
    old = current.get(disk_id)
    if state is None:
        current.pop(disk_id, None)
    elif old is None or old["state"] != state:
        current[disk_id] = {"state": state, "since": now, "reason": reason}
    ops.put_meta(STATES, current)
    bump(ops)
    return old


def moves(ops: IndexTxn) -> dict[str, dict]:
    return ops.get_meta(MOVES, {})


def put_move(ops: IndexTxn, move: dict) -> None:
    current = moves(ops)
    current[move_key(move["volume"], move["slot"])] = move
    ops.put_meta(MOVES, current)


def finish_move(ops: IndexTxn, move: dict) -> None:
    current = moves(ops)
    current.pop(move_key(move["volume"], move["slot"]), None)
    ops.put_meta(MOVES, current)


def switch_slot(ops: IndexTxn, volume_id: str, slot: int, old: str, new: str) -> int:
    """Point fragment index `slot` of a volume at `new`, if it still names `old`.

    Refuses a change that would put two slots of one volume on the same disk."""
    volumes = ops.get_volumes()
    for volume in volumes:
        if volume["id"] != volume_id:
            continue
        if volume["disks"][slot] != old:
            raise SlotChanged(f"volume {volume_id} slot {slot} is on {volume['disks'][slot]}, not {old}")
        if new in volume["disks"]:
            raise SlotChanged(f"volume {volume_id} already has a slot on {new}")
        volume["disks"] = [new if i == slot else d for i, d in enumerate(volume["disks"])]
        ops.put_volumes(volumes)
        return bump(ops)
    raise SlotChanged(f"no volume {volume_id}")


def add_volumes(ops: IndexTxn, added: list[dict]) -> int:
    ids = {v["id"] for v in ops.get_volumes()}
    clash = [v["id"] for v in added if v["id"] in ids]
    if clash:
        raise SlotChanged(f"volumes {clash} exist already")
    ops.put_volumes(ops.get_volumes() + added)
    return bump(ops)


def restore(ops: IndexTxn, gen: int, disk_states: dict) -> None:
    """Disk states and generation as a volume-table record on the disks had them (index rebuild)."""
    ops.put_meta(STATES, disk_states)
    ops.put_meta(GENERATION, gen)
