"""Which disk takes over a volume slot: the failure-domain rules for replacing a disk.

A volume's disks are spread over the widest failure domains there are (volumes.py).
When one slot must go elsewhere (its disk failed or is drained, or a rebalance moves
it), the new disk must keep that spread: prefer a zone the volume does not use yet,
then a node it does not use yet, then the least-loaded disk; never a disk already in
the volume, and never one that is out of service or full.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable

from .volumes import DiskInfo


class NoReplacement(RuntimeError):
    """No eligible disk can take the slot."""


def slot_counts(volumes: Iterable[dict]) -> Counter:
    return Counter(d for v in volumes for d in v["disks"])


def spread(volume_disks: list[str], infos: dict[str, DiskInfo]) -> tuple[int, int]:
    """(distinct zones, distinct nodes) of a list of disks."""
    return (len({infos[d].zone for d in volume_disks}), len({infos[d].node_id for d in volume_disks}))


def domain_rank(volume: dict, slot: int, candidate: str, infos: dict[str, DiskInfo]) -> tuple[int, int]:
    """(0 if the candidate's zone is new to the volume else 1, same for its node): lower is better."""
    others = [d for i, d in enumerate(volume["disks"]) if i != slot]
    info = infos[candidate]
    return (int(info.zone in {infos[d].zone for d in others}),
            int(info.node_id in {infos[d].node_id for d in others}))


def keeps_spread(volume: dict, slot: int, candidate: str, infos: dict[str, DiskInfo]) -> bool:
    """True when putting `candidate` in `slot` loses no zone or node spread the volume has."""
    after = [candidate if i == slot else d for i, d in enumerate(volume["disks"])]
    before = spread(volume["disks"], infos)
    now = spread(after, infos)
    return candidate not in volume["disks"] and now[0] >= before[0] and now[1] >= before[1]


def choose_replacement(volume: dict, slot: int, infos: dict[str, DiskInfo], eligible: Callable[[str], bool],
                       load: Counter) -> str:
    """The best disk for `slot` of `volume`; raises NoReplacement naming why there is none.

    `load` is slots (or bytes) per disk; it is the caller's to update after each choice so
    a disk's many slots spread over many replacements."""
    candidates = [d for d in infos if d not in volume["disks"] and eligible(d)]
    if not candidates:
        raise NoReplacement(f"no disk can take slot {slot} of volume {volume['id']}: every disk in service "
                            f"with room is already in it ({', '.join(volume['disks'])}); add a disk to the config")
    return min(candidates, key=lambda d: (domain_rank(volume, slot, d, infos), load[d], d))
