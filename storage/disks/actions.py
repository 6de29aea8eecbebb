"""What an operator does to disks: declare one failed, drain one, replace one with another.

Each action checks its input first and changes nothing when it is refused (DiskError
names the problem and what to do). Accepted, it records in one index transaction the
disk's new state and a move per volume slot on that disk (index/disks.py), choosing
each replacement by the failure-domain rules of placement/replace.py; the moves then
run in moves.py, from a one-shot command or the gateway, and resume after a crash.

- fail: the disk is gone. Its slots switch at once to replacements and every version in
  those volumes is queued to have that fragment rebuilt (least redundancy first).
- drain: the disk is healthy but leaves. Its slots are copied off (rebuilt where a copy
  is unreadable), then switched; afterwards it is in no volume ("drained") and can be
  removed from the config.
- replace OLD NEW: like drain, but every slot goes to NEW (a disk new to OLD's volumes);
  rebuilt instead of copied when OLD is failed or down.
"""
from __future__ import annotations

import logging
import time
from collections import Counter

from ..durability.sets import live_sets
from ..index import disks as disk_table
from ..objects.records import write_record
from ..placement import rebalance
from ..placement.replace import NoReplacement, choose_replacement, slot_counts

log = logging.getLogger("pocket.disks")


class DiskError(ValueError):
    """Refused: bad disk id, or a request that cannot be carried out. Nothing changed."""


def check_disk(cluster, disk_id: str) -> None:
    if disk_id not in cluster.infos:
        raise DiskError(f"no disk {disk_id!r} in the config; disks are {', '.join(sorted(cluster.infos))}")


def slots_of(cluster, disk_id: str) -> list[tuple[dict, int]]:
    return [(v, i) for v in cluster.volumes.values() for i, d in enumerate(v["disks"]) if d == disk_id]


def pending(index, disk_id: str | None = None) -> list[dict]:
    """Unfinished moves (of one disk, off or onto it, when given)."""
    with index.read() as ops:
        moves = list(disk_table.moves(ops).values())
    return [m for m in moves if disk_id is None or disk_id in (m["from"], m["to"])]


def _eligible(cluster):
    return lambda d: cluster.in_service(d)


def _plan(cluster, index, disk_id: str, mode: str, reason: str, to: str | None = None,
          strict: bool = True) -> tuple[list[dict], list[dict]]:
    """Moves for every slot of `disk_id` not already moving; (moves, slots left unplaced)."""
    busy = {disk_table.move_key(m["volume"], m["slot"]): m for m in pending(index)}
    load = slot_counts(cluster.volumes.values())
    load.update(Counter(m["to"] for m in busy.values()))
    moves, unplaced = [], []
    now = time.time()
    for volume, slot in slots_of(cluster, disk_id):
        prior = busy.get(disk_table.move_key(volume["id"], slot))
        if prior is not None:
            # a copy not switched yet off a disk that is now failed becomes a rebuild to the
            # same disk (what was copied already is kept); any other move goes on as it is
            if mode == "rebuild" and prior["mode"] == "copy" and prior["phase"] == "copying":
                moves.append({**prior, "mode": "rebuild", "phase": "switched", "reason": reason})
            continue
        try:
            target = to or choose_replacement(volume, slot, cluster.infos, _eligible(cluster), load)
        except NoReplacement as e:
            if strict:
                raise DiskError(f"cannot move {disk_id} off: {e}. Nothing was changed.") from None
            unplaced.append({"volume": volume["id"], "slot": slot, "error": str(e)})
            continue
        load[target] += 1
        moves.append({"volume": volume["id"], "slot": slot, "from": disk_id, "to": target, "mode": mode,
                      "phase": "switched" if mode == "rebuild" else "copying", "reason": reason,
                      "created": now})
    return moves, unplaced


def _commit(ops, disk_id: str, state: str, reason: str, moves: list[dict]) -> None:
    """One transaction: the disk's state, each move, and for rebuild moves the switch itself."""
    disk_table.set_state(ops, disk_id, state, reason, time.time())
    for m in moves:
        if m["mode"] == "rebuild":
            disk_table.switch_slot(ops, m["volume"], m["slot"], m["from"], m["to"])
        else:   # a copy move switches later; check now that it still could
            volume = next(v for v in ops.get_volumes() if v["id"] == m["volume"])
            if volume["disks"][m["slot"]] != m["from"] or m["to"] in volume["disks"]:
                raise disk_table.SlotChanged(f"volume {m['volume']} changed meanwhile; try again")
        disk_table.put_move(ops, m)


async def declare_failed(cluster, queue, disk_id: str, reason: str) -> tuple[list[dict], list[dict]]:
    """Mark the disk failed and switch its slots to replacements; returns (moves, unplaced)."""
    check_disk(cluster, disk_id)
    moves, unplaced = await queue.index.call(_plan, cluster, queue.index, disk_id, "rebuild", reason, strict=False)
    await queue.write(lambda ops: _commit(ops, disk_id, disk_table.FAILED, reason, moves))
    await cluster.arefresh(queue.index)
    log.error("disk %s declared FAILED (%s). Its fragments are being rebuilt onto other disks: %s. Reads of "
              "its objects are degraded until then. Replace the hardware, then remove %s from the config "
              "(or add a new disk and let `pocket rebalance` use it).", disk_id, reason,
              ", ".join(f"{m['volume']}[{m['slot']}] -> {m['to']}" for m in moves) or "nothing to move",
              disk_id)
    if unplaced:
        log.error("disk %s: %d of its slots have no disk to go to (%s); add a disk to the config and run "
                  "`pocket disk replace %s NEW`", disk_id, len(unplaced), unplaced[0]["error"], disk_id)
    return moves, unplaced


async def start_drain(cluster, queue, disk_id: str) -> list[dict]:
    check_disk(cluster, disk_id)
    state = cluster.state(disk_id)
    if state == disk_table.FAILED:
        raise DiskError(f"{disk_id} is failed: its slots are rebuilt elsewhere already (see `pocket disk list`)")
    mode = "copy" if cluster.is_up(disk_id) else "rebuild"
    moves, _ = await queue.index.call(_plan, cluster, queue.index, disk_id, mode, "drain")
    await queue.write(lambda ops: _commit(ops, disk_id, disk_table.DRAINING, "drain", moves))
    await cluster.arefresh(queue.index)
    return moves


async def start_replace(cluster, queue, old: str, new: str) -> list[dict]:
    check_disk(cluster, old)
    check_disk(cluster, new)
    if old == new:
        raise DiskError("OLD and NEW are the same disk")
    if cluster.states.get(new, {}).get("state") in disk_table.OUT_OF_SERVICE:
        raise DiskError(f"{new} is {cluster.states[new]['state']}; choose a disk in service")
    if not cluster.is_up(new):
        raise DiskError(f"{new} does not answer; start its node (with --init for a new disk) first")
    if not cluster.has_room(new):
        raise DiskError(f"{new} is full")
    shared = sorted(v["id"] for v, _ in slots_of(cluster, old) if new in v["disks"])
    if shared:
        raise DiskError(f"{new} is already in use in volumes {', '.join(shared)} together with {old}, and a volume "
                        f"cannot hold two slots on one disk; use a disk in none of {old}'s volumes (a new, empty "
                        f"one), or `pocket disk drain {old}` to let Pocket choose")
    failed = cluster.state(old) == disk_table.FAILED
    mode = "copy" if cluster.is_up(old) and not failed else "rebuild"
    moves, _ = await queue.index.call(_plan, cluster, queue.index, old, mode, f"replaced by {new}", to=new)
    state = disk_table.FAILED if failed else disk_table.DRAINING
    await queue.write(lambda ops: _commit(ops, old, state, f"replaced by {new}", moves))
    await cluster.arefresh(queue.index)
    return moves


async def settle_drained(cluster, queue) -> list[str]:
    """Draining disks that hold no slot and have no move left become "drained"."""
    done = []
    busy = {m["from"] for m in await queue.index.call(pending, queue.index)}
    for disk_id, st in cluster.states.items():
        if st["state"] == disk_table.DRAINING and not slots_of(cluster, disk_id) and disk_id not in busy:
            await queue.write(lambda ops, d=disk_id: disk_table.set_state(ops, d, disk_table.DRAINED,
                                                                            "drained", time.time()))
            log.info("disk %s is drained: it holds no data Pocket needs and can be removed from the config",
                     disk_id)
            done.append(disk_id)
    if done:
        await cluster.arefresh(queue.index)
    return done


def stranded(disk_id: str, unplaced: list[dict]) -> list[tuple[str, int, str]]:
    """(volume, slot, why) of a failed disk's slots with nowhere to go, for the repair queue."""
    return [(u["volume"], u["slot"], f"disk {disk_id} failed; no disk can take this slot yet: add one and run "
             f"`pocket disk replace {disk_id} NEW`") for u in unplaced]


def disk_rows(cluster, index) -> list[dict]:
    """One row per configured disk: state, slots, usage, moves pending."""
    moves = pending(index)
    slots = slot_counts(cluster.volumes.values())
    rows = []
    for disk_id, info in sorted(cluster.infos.items()):
        usage = cluster.usage.get(disk_id) or {}
        st = cluster.states.get(disk_id, {})
        rows.append({"id": disk_id, "node": info.node_id, "zone": info.zone, "state": cluster.state(disk_id),
                     "since": st.get("since"), "reason": st.get("reason"), "slots": slots.get(disk_id, 0),
                     "used": usage.get("used"), "free": usage.get("free"), "total": usage.get("total"),
                     "moves_off": sum(m["from"] == disk_id for m in moves),
                     "moves_onto": sum(m["to"] == disk_id for m in moves)})
    return rows


async def publish_table(cluster, timeout: float = 10.0) -> int:
    """Write the volume table and disk states to every disk as a record, so the disks
    alone still tell where every slot is (`pocket index rebuild` takes the newest)."""
    doc = {"kind": "volume-table", "generation": cluster.generation, "volumes": list(cluster.volumes.values()),
           "states": cluster.states}
    _, ok = await write_record(cluster, list(cluster.disks), doc, timeout)
    if not ok:
        log.warning("volume table %d reached no disk; `pocket index rebuild` would fall back to the archives",
                    cluster.generation)
    return ok


def volume_sizes(index) -> tuple[Counter, Counter]:
    """(bytes per slot, versions) of every volume, from a scan of the index."""
    size, count = Counter(), Counter()
    for s in live_sets(index):
        size[s["volume"]] += -(-s["size"] // s["k"])
        count[s["volume"]] += 1
    return size, count


async def start_rebalance(cluster, queue, dry_run: bool = False) -> list[dict]:
    """Plan slot moves that even out the bytes per disk; record them unless `dry_run`."""
    busy = {(m["volume"], m["slot"]) for m in await queue.index.call(pending, queue.index)}
    sizes, _ = await queue.index.call(volume_sizes, queue.index)
    planned = rebalance.plan(list(cluster.volumes.values()), cluster.infos, sizes, _eligible(cluster), busy)
    if dry_run or not planned:
        return planned
    now = time.time()
    moves = [{**m, "mode": "copy", "phase": "copying", "reason": "rebalance", "created": now} for m in planned]
    await queue.write(lambda ops: [disk_table.put_move(ops, m) for m in moves])
    return moves
