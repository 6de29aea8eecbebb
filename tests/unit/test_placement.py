"""Unit tests for storage.placement.volumes: volume construction and choice."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from storage.placement.volumes import DiskInfo, build_volumes, choose_volume


def cluster(zones: int, nodes_per_zone: int, disks_per_node: int) -> list[DiskInfo]:
    out = []
    for z in range(zones):
        for n in range(nodes_per_zone):
            for d in range(disks_per_node):
                out.append(DiskInfo(f"z{z}n{n}d{d}", f"z{z}n{n}", f"zone-{z}"))
    return out


def _by_id(disks):
    return {d.disk_id: d for d in disks}


def _check_slots_balanced(disks, volumes):
    slots = Counter(d for v in volumes for d in v["disks"])
    counts = [slots.get(d.disk_id, 0) for d in disks]
    assert max(counts) - min(counts) <= 1, f"unbalanced slots: {sorted(counts)}"
    return slots


def test_three_zones_two_nodes_two_disks_width_six():
    disks = cluster(3, 2, 2)
    info = _by_id(disks)
    volumes = build_volumes(disks, 6)
    assert volumes, "no volumes built"
    for v in volumes:
        assert v["width"] == 6
        assert len(v["disks"]) == 6
        assert len(set(v["disks"])) == 6, f"{v['id']} repeats a disk"
        assert all(d in info for d in v["disks"])
        zones = Counter(info[d].zone for d in v["disks"])
        assert zones == {"zone-0": 2, "zone-1": 2, "zone-2": 2}, f"{v['id']}: {zones}"
        nodes = Counter(info[d].node_id for d in v["disks"])
        assert max(nodes.values()) == 1, f"{v['id']} puts two fragments on one node: {nodes}"
    _check_slots_balanced(disks, volumes)
    assert len({v["id"] for v in volumes}) == len(volumes)


def test_six_nodes_two_disks_no_node_twice():
    disks = cluster(1, 6, 2)
    info = _by_id(disks)
    volumes = build_volumes(disks, 6)
    for v in volumes:
        assert len(set(v["disks"])) == 6
        nodes = [info[d].node_id for d in v["disks"]]
        assert len(set(nodes)) == 6, f"{v['id']} puts two fragments on one node: {nodes}"
    _check_slots_balanced(disks, volumes)


@pytest.mark.parametrize("shape,width", [
    ((3, 2, 2), 6), ((1, 6, 2), 6), ((1, 1, 6), 6), ((1, 3, 5), 9), ((2, 4, 3), 14),
    ((3, 3, 3), 3), ((1, 7, 1), 6), ((5, 1, 1), 5),
])
def test_load_is_balanced_and_spread(shape, width):
    disks = cluster(*shape)
    info = _by_id(disks)
    volumes = build_volumes(disks, width)
    slots = _check_slots_balanced(disks, volumes)
    assert sum(slots.values()) == len(volumes) * width
    n_zones = shape[0]
    n_nodes = shape[0] * shape[1]
    for v in volumes:
        assert len(set(v["disks"])) == width
        # as even as possible across zones, then nodes
        z = Counter(info[d].zone for d in v["disks"])
        assert max(z.values()) - min(z.get(f"zone-{i}", 0) for i in range(n_zones)) <= 1
        nodes = Counter(info[d].node_id for d in v["disks"])
        assert max(nodes.values()) == -(-width // n_nodes)


def test_explicit_count_is_honoured_and_still_balanced():
    disks = cluster(3, 2, 2)
    volumes = build_volumes(disks, 6, count=10)
    assert len(volumes) == 10
    _check_slots_balanced(disks, volumes)


def test_deterministic():
    disks = cluster(3, 2, 2)
    a = build_volumes(disks, 6)
    b = build_volumes(list(disks), 6)
    assert a == b
    # the order the disks are listed in does not change the volumes either
    shuffled = list(disks)
    random.Random(4).shuffle(shuffled)
    assert build_volumes(shuffled, 6) == a


def test_different_widths_get_distinct_volume_ids():
    disks = cluster(3, 2, 2)
    v6 = build_volumes(disks, 6)
    v3 = build_volumes(disks, 3)
    assert not ({v["id"] for v in v6} & {v["id"] for v in v3})


@pytest.mark.parametrize("n,width", [(0, 6), (5, 6), (13, 14)])
def test_too_few_disks_raises_clear_error(n, width):
    disks = cluster(1, 1, n)
    with pytest.raises(ValueError) as e:
        build_volumes(disks, width)
    msg = str(e.value)
    assert str(width) in msg and str(n) in msg
    assert "disk" in msg


def test_choose_volume_prefers_all_up_and_is_stable():
    disks = cluster(3, 2, 2)
    volumes = build_volumes(disks, 6) + build_volumes(disks, 3)
    all_up = lambda d: True  # noqa: E731
    rng = random.Random(9)
    vids = [rng.randbytes(16).hex() for _ in range(200)]

    picks = [choose_volume(volumes, 6, vid, all_up) for vid in vids]
    assert all(p["width"] == 6 for p in picks)
    # stable for the same version id
    assert [choose_volume(volumes, 6, vid, all_up)["id"] for vid in vids] == [p["id"] for p in picks]
    # hashing spreads versions across all volumes of that width
    assert len({p["id"] for p in picks}) == len([v for v in volumes if v["width"] == 6])

    dead = {"z0n0d0", "z1n1d1"}
    is_up = lambda d: d not in dead  # noqa: E731
    healthy = [v for v in volumes if v["width"] == 6 and not dead & set(v["disks"])]
    assert healthy, "test setup: need at least one volume that avoids the dead disks"
    for vid in vids:
        chosen = choose_volume(volumes, 6, vid, is_up)
        assert not dead & set(chosen["disks"]), f"chose {chosen['id']} with a dead disk"
        assert choose_volume(volumes, 6, vid, is_up) == chosen
        # a version whose first choice was healthy keeps it
        first = choose_volume(volumes, 6, vid, all_up)
        if not dead & set(first["disks"]):
            assert chosen == first


def test_choose_volume_falls_back_to_most_up_when_none_fully_up():
    volumes = [{"id": "a", "width": 3, "disks": ["1", "2", "3"]},
               {"id": "b", "width": 3, "disks": ["4", "5", "6"]}]
    is_up = lambda d: d not in {"1", "2", "4"}  # noqa: E731
    for i in range(50):
        assert choose_volume(volumes, 3, f"{i:032x}", is_up)["id"] == "b"


def test_choose_volume_without_that_width_raises():
    volumes = build_volumes(cluster(1, 1, 6), 6)
    with pytest.raises(ValueError, match="width 3"):
        choose_volume(volumes, 3, "0" * 32, lambda d: True)
