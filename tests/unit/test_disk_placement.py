"""Unit tests for choosing replacement disks, growing the volume table and planning a rebalance."""
from __future__ import annotations

from collections import Counter

import pytest

from storage.placement import rebalance
from storage.placement.replace import NoReplacement, choose_replacement, slot_counts, spread
from storage.placement.volumes import build_volumes, grow_volumes

from .test_placement import _by_id, cluster


def test_replacement_prefers_a_new_zone_then_a_new_node_then_the_least_loaded():
    disks = cluster(3, 2, 2)           # 12 disks: zones 0..2, two nodes each, two disks per node
    info = _by_id(disks)
    volume = {"id": "v", "width": 3, "disks": ["z0n0d0", "z1n0d0", "z0n1d0"]}
    load = Counter()
    # replacing slot 2 (zone 0): the others use zones 0 and 1, so zone 2 wins
    assert info[choose_replacement(volume, 2, info, lambda d: True, load)].zone == "zone-2"
    # with zone 2 unavailable: a node the others do not use
    got = choose_replacement(volume, 2, info, lambda d: info[d].zone != "zone-2", load)
    assert info[got].node_id not in {"z0n0", "z1n0"}
    # among equals the least loaded wins
    load.update({"z2n0d0": 5, "z2n0d1": 5, "z2n1d0": 5})
    assert choose_replacement(volume, 2, info, lambda d: True, load) == "z2n1d1"


def test_replacement_never_reuses_a_disk_of_the_volume_and_says_when_none_is_left():
    disks = cluster(1, 6, 1)
    info = _by_id(disks)
    volume = {"id": "w6-0000", "width": 6, "disks": [d.disk_id for d in disks]}
    with pytest.raises(NoReplacement, match="w6-0000"):
        choose_replacement(volume, 2, info, lambda d: True, Counter())


def test_grow_gives_new_disks_slots_and_keeps_old_volumes():
    old_disks = cluster(1, 6, 1)
    volumes = build_volumes(old_disks, 6)
    new_disks = cluster(1, 8, 1)       # two more nodes, same ids for the old six
    added = grow_volumes(volumes, new_disks, {6})
    assert {v["id"] for v in added}.isdisjoint({v["id"] for v in volumes})
    slots = slot_counts(added)
    assert slots["z0n6d0"] >= 4 and slots["z0n7d0"] >= 4
    for v in added:
        assert len(set(v["disks"])) == 6
    assert grow_volumes(volumes + added, new_disks, {6}) == []


def _loaded(volumes, per_volume):
    return {v["id"]: per_volume for v in volumes}


def test_rebalance_moves_data_onto_an_empty_disk_keeping_spread():
    disks = cluster(1, 7, 1)
    info = _by_id(disks)
    volumes = build_volumes(disks[:6], 6)          # the seventh disk is new and empty
    sizes = _loaded(volumes, 1000)
    moves = rebalance.plan(volumes, info, sizes, lambda d: True)
    assert moves and all(m["to"] == "z0n6d0" for m in moves)
    after = {v["id"]: list(v["disks"]) for v in volumes}
    for m in moves:
        assert after[m["volume"]][m["slot"]] == m["from"]
        after[m["volume"]][m["slot"]] = m["to"]
    for v in volumes:
        assert len(set(after[v["id"]])) == 6
        assert spread(after[v["id"]], info) >= spread(v["disks"], info)
    load = rebalance.disk_load([{**v, "disks": after[v["id"]]} for v in volumes], sizes)
    assert max(load.values()) - min(load.values()) <= 1000


def test_rebalance_never_loses_zone_spread():
    """Volumes span three zones; the empty disk is in zone 0, so only zone-0 slots may move to it."""
    disks = cluster(3, 2, 1)
    info = _by_id(disks)
    volumes = build_volumes(disks, 3, count=8)
    for v in volumes:
        assert spread(v["disks"], info)[0] == 3
    info["z0n9d0"] = type(disks[0])("z0n9d0", "z0n9", "zone-0")
    moves = rebalance.plan(volumes, info, _loaded(volumes, 1000), lambda d: True)
    assert moves
    for m in moves:
        assert m["to"] == "z0n9d0" and info[m["from"]].zone == "zone-0"


def test_rebalance_of_a_balanced_cluster_moves_nothing():
    disks = cluster(1, 6, 1)
    volumes = build_volumes(disks, 6)
    assert rebalance.plan(volumes, _by_id(disks), _loaded(volumes, 1000), lambda d: True) == []
