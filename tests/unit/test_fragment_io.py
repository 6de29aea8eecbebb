"""The fragment writer and reader on their own (storage/objects/put.py, get.py): six local
disk folders, no index, no S3. What the object service and the repairer build on: every
segment lands as record j of every fragment archive, and reads give back exactly the
segments asked for, decoding around missing and corrupt fragments and reporting them.

Bodies are seeded random bytes, unique at every offset, so a segment read from the wrong
place or a window off by one cannot pass."""
from __future__ import annotations

import asyncio
import os
import random

import pytest

from storage import layout
from storage.cluster import Cluster
from storage.codec import Codec
from storage.node.store import DiskStore
from storage.objects import get as get_mod
from storage.objects.get import ArchiveReader, Unreadable
from storage.objects.ids import new_id
from storage.objects.put import ArchiveWriter, QuorumLost
from storage.placement.volumes import DiskInfo

SEG = 8192          # small segments: many of them in little data
K, M = 4, 2


class Disks:
    """Six disk folders (archives as files, so a test can reach into them) and their cluster."""

    def __init__(self, root):
        self.stores = {f"d{i}": DiskStore(f"d{i}", os.path.join(root, f"d{i}"), pack_threshold=0).open()
                       for i in range(K + M)}
        self.cluster = Cluster(self.stores, [DiskInfo(d, f"node{i}", "z1") for i, d in enumerate(self.stores)])
        self.codec = Codec(K, M)
        self.volume = {"id": "v1", "disks": list(self.stores)}

    def path(self, vid: str, i: int) -> str:
        return self.stores[self.volume["disks"][i]].archive_path(layout.archive_name(vid, i))

    async def put(self, data: bytes, quorum: int = K + 1) -> tuple[dict, list[int]]:
        vid = new_id()
        writer = ArchiveWriter(self.cluster, self.codec, self.volume, vid, SEG, quorum, timeout=5)
        writer.start()
        for at in range(0, len(data), SEG):
            await writer.write_blocks(self.codec.encode(data[at:at + SEG]))
        record = {"bucket": "b", "key": "k", "version_id": vid, "size": len(data), "segment_size": SEG,
                  "k": K, "m": M, "volume": "v1", "disks": self.volume["disks"]}
        return record, await writer.finish(record)

    def reader(self, record: dict, **kw) -> ArchiveReader:
        return ArchiveReader(self.cluster, self.codec, record, self.volume, **kw)

    def close(self):
        for s in self.stores.values():
            s.close()


def body(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def run(tmp_path, scenario):
    async def go():
        disks = Disks(str(tmp_path))
        try:
            await scenario(disks)
        finally:
            disks.close()
    asyncio.run(go())


async def read_all(reader: ArchiveReader, first: int, last: int) -> bytes:
    return b"".join([s async for s in reader.segments(first, last)])


def flip(path: str, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x40]))


# the writer --------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, SEG - 1, SEG, 3 * SEG, 5 * SEG + 123])
def test_each_segment_is_record_j_of_every_archive_the_last_one_short(tmp_path, size):
    async def scenario(d):
        data = body(size, size)
        record, done = await d.put(data)
        assert done == list(range(K + M))
        geo = layout.Geometry(size, SEG, K)
        for i in range(K + M):
            with open(d.path(record["version_id"], i), "rb") as f:
                raw = f.read()
            head = layout.ArchiveHeader.unpack(raw[:layout.HEADER_SIZE])
            assert (head.version_id, head.index, head.k, head.m, head.segment_size) == \
                (record["version_id"], i, K, M, SEG)
            for j in range(geo.segments):
                segment = data[j * SEG:(j + 1) * SEG]
                offset = geo.record_offset(j)
                block = layout.unpack_record(raw[offset:offset + geo.record_length(j)])
                assert block == d.codec.encode(segment)[i], (i, j)
            assert len(block) == -(-geo.segment_length(geo.segments - 1) // K)   # the short last one
            length, want = layout.unpack_footer(raw[-layout.FOOTER_SIZE:])
            assert geo.records_end() + length + layout.FOOTER_SIZE == len(raw)
            assert layout.unpack_trailer(raw[geo.records_end():-layout.FOOTER_SIZE], want) == record
    run(tmp_path, scenario)


def test_a_down_disk_leaves_its_fragment_out_and_the_rest_commit(tmp_path):
    async def scenario(d):
        d.cluster.mark_down("d2", "test")
        record, done = await d.put(body(2 * SEG + 5, 1))
        assert done == [0, 1, 3, 4, 5]
        assert not os.path.exists(d.path(record["version_id"], 2))
        d.cluster.mark_up("d2")
        assert await read_all(d.reader(record), 0, 2) == body(2 * SEG + 5, 1)
    run(tmp_path, scenario)


def test_without_a_write_quorum_nothing_is_left_behind(tmp_path):
    async def scenario(d):
        d.cluster.mark_down("d1", "test")
        d.cluster.mark_down("d4", "test")
        with pytest.raises(QuorumLost, match="need 5"):
            await d.put(body(SEG, 2))
        d.cluster.mark_up("d1")
        d.cluster.mark_up("d4")
        left = [f for s in d.stores.values() for _, _, fs in os.walk(os.path.join(s.root, "archives")) for f in fs]
        assert left == []
    run(tmp_path, scenario)


def test_abort_removes_archives_already_committed(tmp_path):
    async def scenario(d):
        vid = new_id()
        writer = ArchiveWriter(d.cluster, d.codec, d.volume, vid, SEG, K + 1, timeout=5)
        writer.start()
        await writer.write_blocks(d.codec.encode(body(SEG, 3)))
        await writer.abort("the client went away")
        assert not any(os.path.exists(d.path(vid, i)) for i in range(K + M))
    run(tmp_path, scenario)


# the reader --------------------------------------------------------------------------------
@pytest.mark.parametrize("first,last", [(0, 0), (0, 6), (3, 3), (2, 5), (6, 6), (5, 6)])
def test_any_run_of_segments_reads_exactly_those_across_windows(tmp_path, monkeypatch, first, last):
    monkeypatch.setattr(get_mod, "WINDOW_BYTES", 2 * SEG)     # two segments a window: many windows
    async def scenario(d):
        data = body(6 * SEG + 777, 4)            # 7 segments, the last 777 bytes
        record, _ = await d.put(data)
        reader = d.reader(record)
        got = [s async for s in reader.segments(first, last)]
        assert got == [data[j * SEG:(j + 1) * SEG] for j in range(first, last + 1)]
        assert reader.damage == []
    run(tmp_path, scenario)


@pytest.mark.parametrize("lost,reported", [([0], [0]), ([3], [3]), ([1, 2], [1, 2]),
                                           ([4, 5], []),          # data fragments whole: parity never read
                                           ([0, 4], [0, 4]),      # parity 4 tried first, then 5
                                           ([0, 5], [0])])
def test_missing_fragments_are_decoded_around_and_reported_missing(tmp_path, lost, reported):
    async def scenario(d):
        data = body(4 * SEG + 99, 5)
        record, _ = await d.put(data)
        for i in lost:
            os.unlink(d.path(record["version_id"], i))
        reader = d.reader(record)
        assert await read_all(reader, 0, 4) == data
        assert sorted(x.index for x in reader.damage) == reported
        assert all(x.kind == "missing" and x.disk_id == d.volume["disks"][x.index] for x in reader.damage)
    run(tmp_path, scenario)


def test_a_corrupt_record_costs_one_parity_read_and_is_reported_with_its_segment(tmp_path, monkeypatch):
    monkeypatch.setattr(get_mod, "WINDOW_BYTES", 2 * SEG)
    async def scenario(d):
        data = body(6 * SEG + 10, 6)
        record, _ = await d.put(data)
        geo = layout.Geometry(len(data), SEG, K)
        vid = record["version_id"]
        flip(d.path(vid, 1), geo.record_offset(3) + layout.RECORD_OVERHEAD + 17)   # fragment 1, segment 3
        flip(d.path(vid, 2), geo.record_offset(6) + geo.record_length(6) - 1)       # fragment 2, the last segment
        reader = d.reader(record)
        assert await read_all(reader, 0, 6) == data
        assert sorted((x.index, x.kind) for x in reader.damage) == [(1, "corrupt"), (2, "corrupt")]
        reasons = {x.index: x.reason for x in reader.damage}
        assert reasons[1].startswith("segment 3:") and reasons[2].startswith("segment 6:")
        # a range that avoids the rotten records meets no damage
        clean = d.reader(record)
        assert [s async for s in clean.segments(0, 2)] == [data[j * SEG:(j + 1) * SEG] for j in range(3)]
        assert clean.damage == []
    run(tmp_path, scenario)


def test_more_than_m_bad_fragments_is_unreadable_not_wrong_bytes(tmp_path):
    async def scenario(d):
        data = body(3 * SEG, 7)
        record, _ = await d.put(data)
        geo = layout.Geometry(len(data), SEG, K)
        os.unlink(d.path(record["version_id"], 0))
        os.unlink(d.path(record["version_id"], 4))
        flip(d.path(record["version_id"], 2), geo.record_offset(1) + layout.RECORD_OVERHEAD)
        reader = d.reader(record)
        with pytest.raises(Unreadable, match="fewer than 4 good fragments"):
            await read_all(reader, 0, 2)
        # segment 0 alone still has its four good fragments
        assert await read_all(d.reader(record), 0, 0) == data[:SEG]
    run(tmp_path, scenario)


def test_fragments_to_avoid_are_read_only_as_a_last_resort(tmp_path):
    async def scenario(d):
        data = body(2 * SEG + 1, 8)
        record, _ = await d.put(data)
        reads = []
        for disk_id, store in d.stores.items():
            original = store.read

            async def read(name, offset, length, original=original):
                reads.append(int(name.rsplit(".", 1)[1]))
                return await original(name, offset, length)
            store.read = read
        assert await read_all(d.reader(record, avoid=frozenset({1})), 0, 2) == data
        assert sorted(reads) == [0, 2, 3, 4]      # parity 4 instead of the fragment being rebuilt
    run(tmp_path, scenario)
