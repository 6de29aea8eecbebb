"""Disk states and slot moves as recorded in a real index (no disks needed: nothing is copied here)."""
from __future__ import annotations

import asyncio

import pytest

from storage.cluster import Cluster
from storage.disks import actions
from storage.durability.queue import RepairQueue
from storage.index import disks as disk_table
from storage.placement.volumes import DiskInfo

IDS = [f"d{i}" for i in range(1, 8)]


def _cluster(index) -> tuple[Cluster, RepairQueue]:
    cluster = Cluster({d: None for d in IDS}, [DiskInfo(d, f"n{d}", "z") for d in IDS])
    cluster.load_volumes(index, {6})
    return cluster, RepairQueue(index)


def _generation(queue) -> int:
    with queue.index.read() as ops:
        return disk_table.generation(ops)


def test_failing_a_draining_disk_turns_its_unswitched_copies_into_rebuilds(make_index):
    cluster, queue = _cluster(make_index("index"))
    slots = actions.slots_of(cluster, "d3")
    moves = asyncio.run(actions.start_drain(cluster, queue, "d3"))
    assert len(moves) == len(slots) and {m["mode"] for m in moves} == {"copy"}
    assert actions.slots_of(cluster, "d3") == slots            # a copy switches only once copied

    rebuilds, unplaced = asyncio.run(actions.declare_failed(cluster, queue, "d3", "test"))
    assert not unplaced
    assert [(m["volume"], m["slot"], m["to"]) for m in rebuilds] == [(m["volume"], m["slot"], m["to"]) for m in moves]
    assert actions.slots_of(cluster, "d3") == []
    assert {m["mode"] for m in actions.pending(queue.index)} == {"rebuild"}
    for v in cluster.volumes.values():
        assert len(set(v["disks"])) == 6
    queue.index.close()

    again, _ = _cluster(make_index("index"))                 # a restart remembers
    assert again.state("d3") == "failed" and not again.is_up("d3")


def test_refused_requests_change_nothing(make_index):
    cluster, queue = _cluster(make_index("index"))
    before = (_generation(queue), dict(cluster.volumes))
    with pytest.raises(actions.DiskError, match="no disk 'd9'"):
        asyncio.run(actions.start_drain(cluster, queue, "d9"))
    with pytest.raises(actions.DiskError, match="already in use"):
        asyncio.run(actions.start_replace(cluster, queue, "d1", "d2"))
    with pytest.raises(actions.DiskError, match="same disk"):
        asyncio.run(actions.start_replace(cluster, queue, "d1", "d1"))
    assert (_generation(queue), cluster.volumes) == before
    assert actions.pending(queue.index) == []
