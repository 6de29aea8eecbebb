"""Planning a rebalance: which volume slots to move so every disk holds about as much data.

A disk's load is the bytes of the fragments it holds: for each volume it is in, the
volume's bytes per slot (the data of its versions divided by k, from an index scan).
The plan repeatedly takes the most loaded disk and the least loaded one and moves the
slot of a volume on the first to the second whose bytes come closest to halving the
gap between them. A move is only taken when its bytes are less than the gap, so each
strictly lowers the sum of squared loads and the plan ends; moves that would lose a
volume's zone or node spread, or put two slots of one volume on one disk, are never
chosen. Gaps under `min_gap` (default 5% of the mean load) are left alone: moving
data to gain nothing measurable only costs bandwidth.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from .replace import keeps_spread
from .volumes import DiskInfo


def disk_load(volumes: list[dict], volume_bytes: dict[str, int]) -> Counter:
    load: Counter = Counter()
    for v in volumes:
        for d in v["disks"]:
            load[d] += volume_bytes.get(v["id"], 0)
    return load


def plan(volumes: list[dict], infos: dict[str, DiskInfo], volume_bytes: dict[str, int],
         eligible: Callable[[str], bool], busy: set[tuple[str, int]] = frozenset(), max_moves: int = 1000,
         min_gap: int | None = None) -> list[dict]:
    """Moves [{volume, slot, from, to, bytes}] in the order to run them."""
    volumes = [{**v, "disks": list(v["disks"])} for v in volumes]
    disks = [d for d in infos if eligible(d)]
    load = disk_load(volumes, volume_bytes)
    for d in disks:
        load[d] += 0
    if min_gap is None:
        min_gap = int(0.05 * sum(load[d] for d in disks) / max(1, len(disks)))
    moves: list[dict] = []
    while len(moves) < max_moves:
        move = _best_move(volumes, infos, volume_bytes, disks, load, busy, min_gap)
        if move is None:
            break
        volume, slot, dst, size = move
        src = volume["disks"][slot]
        volume["disks"][slot] = dst
        load[src] -= size
        load[dst] += size
        busy = busy | {(volume["id"], slot)}
        moves.append({"volume": volume["id"], "slot": slot, "from": src, "to": dst, "bytes": size})
    return moves


def _best_move(volumes, infos, volume_bytes, disks, load, busy, min_gap):
    sources = sorted(disks, key=lambda d: -load[d])
    targets = sorted(disks, key=lambda d: load[d])
    for src in sources:
        for dst in targets:
            gap = load[src] - load[dst]
            if gap <= max(min_gap, 0) or src == dst:
                break
            best = None
            for volume in volumes:
                if src not in volume["disks"] or dst in volume["disks"]:
                    continue
                slot = volume["disks"].index(src)
                size = volume_bytes.get(volume["id"], 0)
                if size <= 0 or size >= gap or (volume["id"], slot) in busy:
                    continue
                if not keeps_spread(volume, slot, dst, infos):
                    continue
                score = abs(gap / 2 - size)
                if best is None or score < best[0]:
                    best = (score, volume, slot, size)
            if best is not None:
                return best[1], best[2], dst, best[3]
    return None
