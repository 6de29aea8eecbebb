"""Uploads in progress across a gateway's workers (storage/shared_writes.py), on each backend.

Two workers of one gateway share the index; a disk move may delete the old copies only
once neither still runs an upload that chose its volume under the older volume table."""
from __future__ import annotations

import asyncio

from storage.cluster import Cluster
from storage.index import disks as disk_table
from storage.index.batcher import IndexWriter
from storage.shared_writes import SharedWrites

HOLDERS = ["host/127.0.0.1:9000#0", "host/127.0.0.1:9000#1"]


def test_the_oldest_upload_of_any_worker_holds_a_move_back(make_index):
    async def go():
        index = make_index()
        writer = IndexWriter(index)
        workers = []
        for me in HOLDERS:
            cluster = Cluster({}, [])
            cluster.refresh(index, force=True)
            workers.append((cluster, SharedWrites(cluster, index, writer, me, HOLDERS, stale_after=30)))
        (a, shared_a), (b, shared_b) = workers
        start = a.generation
        with a.writing():                     # worker 0 is uploading under the current table
            index.write(disk_table.bump)      # a move switched a slot: the table is newer
            for cluster, shared in workers:
                cluster.refresh(index)
                await shared.beat()
            await shared_b.beat()             # worker 1 has heard of worker 0's upload
            assert b.oldest_write() == start + 1     # worker 1 alone would let the move go on
            assert shared_b.oldest_write() == start  # the gateway's answer holds it back
            assert shared_b.volume_generation() == start + 1
        await shared_a.beat()
        await shared_b.beat()
        assert shared_b.oldest_write() == start + 1 == shared_a.oldest_write()
        await writer.aclose()
    asyncio.run(go())


def test_a_worker_gone_quiet_stops_counting(make_index):
    async def go():
        index = make_index()
        writer = IndexWriter(index)
        a, b = Cluster({}, []), Cluster({}, [])
        a.refresh(index, force=True)
        b.refresh(index, force=True)
        now = [1_000_000.0]   # the workers' wall clock, moved by the test

        def clock():
            return now[0]
        shared_a = SharedWrites(a, index, writer, HOLDERS[0], HOLDERS, stale_after=0.2, clock=clock)
        shared_b = SharedWrites(b, index, writer, HOLDERS[1], HOLDERS, stale_after=0.2, clock=clock)
        with a.writing():
            await shared_a.beat()              # its last word: an upload under the old table
        index.write(disk_table.bump)
        b.refresh(index)
        await shared_b.beat()
        assert shared_b.oldest_write() == b.generation - 1
        now[0] += 0.1
        await shared_b.beat()
        assert shared_b.oldest_write() == b.generation - 1   # still within stale_after: it counts
        now[0] += 0.2                          # worker 0 died: no beat for longer than stale_after
        await shared_b.beat()
        assert shared_b.oldest_write() == b.generation
        await writer.aclose()
    asyncio.run(go())


def test_ready_waits_for_every_worker_of_this_run(make_index):
    """A probe answered by the first worker up said ready while its sibling had not started:
    that sibling then served with disks its first heartbeat had not reached marked down."""
    async def go():
        index = make_index()
        writer = IndexWriter(index)
        earlier = SharedWrites(Cluster({}, []), index, writer, HOLDERS[1], HOLDERS, stale_after=30, run="pid-1")
        await earlier.beat()                  # worker 1 of the gateway's previous run, a moment ago
        first = SharedWrites(Cluster({}, []), index, writer, HOLDERS[0], HOLDERS, stale_after=30, run="pid-2")
        await first.beat()
        assert not first.siblings_ready       # worker 1 of this run has not reported yet
        late = SharedWrites(Cluster({}, []), index, writer, HOLDERS[1], HOLDERS, stale_after=30, run="pid-2",
                            own_ready=lambda: False)
        await late.beat()                     # up, but its disks not reached yet
        await first.beat()
        assert not first.siblings_ready
        late.own_ready = lambda: True
        await late.beat()
        await first.beat()
        assert first.siblings_ready and late.siblings_ready
        await writer.aclose()
    asyncio.run(go())
