"""Volumes: fixed groups of disks that an object version is written to.

An object's record names its volume, not its disks, so replacing a dead disk changes
one volume entry (Magic Pocket's volumes, Ceph's placement groups, MinIO's erasure sets).
Each volume spreads its disks over the widest failure domains there are: distinct
zones first, then distinct nodes, then distinct disks; across volumes every disk gets
about the same number of slots so load spreads evenly.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class DiskInfo:
    disk_id: str
    node_id: str
    zone: str


SLOTS_PER_DISK = 4


def build_volumes(disks: list[DiskInfo], width: int, count: int | None = None, first: int = 0,
                  slots: Counter | None = None) -> list[dict]:
    """Deterministic volumes of `width` disks; `count` defaults to 4 slots per disk.

    `slots` (existing slots per disk) and `first` (the first volume number) let a grown
    cluster add volumes beside the old ones: the disks with fewest slots, the new ones,
    are chosen first within each failure domain."""
    if len(disks) < width:
        raise ValueError(f"a volume needs {width} disks but the cluster has {len(disks)}: "
                         "add disks or choose a narrower storage policy")
    count = count or max(1, (len(disks) * SLOTS_PER_DISK) // width)
    slots = Counter(slots or {})
    volumes = []
    for v in range(first, first + count):
        chosen: list[DiskInfo] = []
        zones: Counter[str] = Counter()
        nodes: Counter[str] = Counter()
        for _ in range(width):
            best = min((d for d in disks if d not in chosen),
                       key=lambda d: (zones[d.zone], nodes[d.node_id], slots[d.disk_id],
                                      _tiebreak(v, d.disk_id)))
            chosen.append(best)
            zones[best.zone] += 1
            nodes[best.node_id] += 1
            slots[best.disk_id] += 1
        volumes.append({"id": f"w{width}-{v:04d}", "width": width, "disks": [d.disk_id for d in chosen]})
    return volumes


def grow_volumes(volumes: list[dict], disks: list[DiskInfo], widths: set[int]) -> list[dict]:
    """New volumes that give disks in no volume yet (`disks` lists the candidates, old and
    new) about SLOTS_PER_DISK slots each; old volumes stay as they are, since records
    name them. Empty when every disk already has a slot."""
    used = Counter(d for v in volumes for d in v["disks"])
    new = [d for d in disks if d.disk_id not in used]
    added: list[dict] = []
    if not new:
        return added
    for width in sorted(widths):
        if len(disks) < width:
            continue
        numbers = [int(v["id"].rsplit("-", 1)[1]) for v in volumes if v["width"] == width]
        per_volume = min(width, len(new))
        count = -(-len(new) * SLOTS_PER_DISK // per_volume)
        added += build_volumes(disks, width, count, first=max(numbers, default=-1) + 1,
                               slots=Counter({d: n for d, n in used.items()}))
    return added


def _tiebreak(volume: int, disk_id: str) -> bytes:
    return hashlib.blake2b(f"{volume}/{disk_id}".encode(), digest_size=8).digest()


def choose_volume(volumes: list[dict], width: int, version_id: str, is_up) -> dict:
    """A volume of `width` for this version, preferring volumes whose disks are all up.

    Hashing the version id spreads objects evenly; among equally healthy volumes the
    first in hash order wins, so the choice is stable for a given version."""
    candidates = [v for v in volumes if v["width"] == width]
    if not candidates:
        raise ValueError(f"no volumes of width {width}; the volume table does not match the policies")
    start = int(version_id[-8:], 16) % len(candidates)
    ordered = candidates[start:] + candidates[:start]
    for volume in ordered:   # the usual case, without scoring every volume (6 % of a small PUT)
        if all(map(is_up, volume["disks"])):
            return volume
    return max(ordered, key=lambda v: sum(1 for d in v["disks"] if is_up(d)))
