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


def build_volumes(disks: list[DiskInfo], width: int, count: int | None = None) -> list[dict]:
    """Deterministic volumes of `width` disks; `count` defaults to 4 slots per disk."""
    if len(disks) < width:
        raise ValueError(f"a volume needs {width} disks but the cluster has {len(disks)}: "
                         "add disks or choose a narrower storage policy")
    count = count or max(1, (len(disks) * 4) // width)
    slots: Counter[str] = Counter()
    volumes = []
    for v in range(count):
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
    return max(ordered, key=lambda v: sum(1 for d in v["disks"] if is_up(d)))
