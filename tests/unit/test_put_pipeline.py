"""The PUT pipeline (storage/objects/pipeline.py) through the object service, on six local
disk folders: digests, encoding and disk writes of several segments overlap, so these
check that what comes out is still exactly the body, in order, at every size around the
segment and window boundaries, whatever chunks the body arrives in; that a body or a
disk failing mid-window leaves nothing visible; and that reads of it, whole, ranged or
with m disks down, give back the exact bytes.

Segments are larger than the pipeline's inline threshold, so the threaded path runs.
Bodies are seeded random bytes, unique at every offset."""
from __future__ import annotations

import asyncio
import hashlib
import os
import random

import pytest

from storage import layout
from storage.cluster import Cluster
from storage.node.store import DiskStore
from storage.objects import get as get_mod
from storage.objects import pipeline
from storage.objects.put import QuorumLost
from storage.objects.service import ObjectService, Policy
from storage.placement.volumes import DiskInfo
from storage.s3 import errors
from storage.s3.digests import BodyDigests

SEG = 80 << 10                      # > pipeline._INLINE_BYTES: encoded in threads
PUT_WINDOW = pipeline.DEPTH * SEG   # segments in flight in the pipeline
GET_WINDOW = 2 * SEG                # patched below: a GET window of two segments


def unique(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


class FailingDisk:
    """A local disk whose archive writes break after `after` chunks (an I/O error mid-upload)."""

    def __init__(self, store: DiskStore, after: int):
        self.store, self.after = store, after

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def put_archive(self, name, chunks):
        async def broken():
            n = 0
            async for chunk in chunks:
                if n == self.after:
                    raise OSError(5, "Input/output error (test: disk failing mid-window)")
                n += 1
                yield chunk
        return await self.store.put_archive(name, broken())


class World:
    def __init__(self, root: str):
        self.stores = {f"d{i}": DiskStore(f"d{i}", os.path.join(root, f"d{i}")).open() for i in range(6)}
        self.cluster = Cluster(dict(self.stores), [DiskInfo(d, f"node{i}", "z1") for i, d in enumerate(self.stores)])
        self.cluster.volumes = {"v1": {"id": "v1", "width": 6, "disks": list(self.stores)}}
        self.service = ObjectService(self.cluster, None, None, {"ec": Policy.parse("ec", "ec:4+2")}, "ec", None, 0, SEG)

    async def store(self, data: bytes, chunks=None, fail_after: int | None = None):
        """Store `data` arriving in chunks of the given sizes (random ones by default)."""
        rnd = random.Random(len(data))
        sizes = chunks or []
        if not sizes:
            at = 0
            while at < len(data):
                sizes.append(rnd.randint(1, 2 * SEG))
                at += sizes[-1]

        async def body():
            at = 0
            for n, size in enumerate(sizes):
                if fail_after is not None and n == fail_after:
                    raise ConnectionResetError("test: the client went away mid-body")
                yield data[at:at + size]
                at += size
                await asyncio.sleep(0)
        return await self.service.store(body(), len(data), BodyDigests({}, len(data), None),
                                        {"bucket": "b", "key": "k"})

    async def read(self, record, start=0, end=None) -> bytes:
        end = record["size"] - 1 if end is None else end
        return b"".join([c async for c in self.service.read(record, start, end)])

    def leftovers(self) -> list[str]:
        """Archive files and unfinished temp files on any disk, and packed archives."""
        found = []
        for s in self.stores.values():
            for sub in ("archives", "tmp"):
                found += [f for _, _, fs in os.walk(os.path.join(s.root, sub)) for f in fs]
            found += [name for name, _ in s.list_archives()]
        return found

    def close(self):
        for s in self.stores.values():
            s.close()


def run(tmp_path, scenario):
    async def go():
        w = World(str(tmp_path))
        try:
            await scenario(w)
        finally:
            w.close()
    asyncio.run(go())


@pytest.fixture(autouse=True)
def small_get_windows(monkeypatch):
    monkeypatch.setattr(get_mod, "WINDOW_BYTES", GET_WINDOW)


SIZES = [1, SEG - 1, SEG, SEG + 1, PUT_WINDOW - 1, PUT_WINDOW, PUT_WINDOW + 1,
         3 * PUT_WINDOW + 4321, 2 * GET_WINDOW + SEG // 3]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_is_byte_exact_around_segment_and_window_boundaries(tmp_path, size):
    async def scenario(w):
        data = unique(size, size)
        record = await w.store(data)
        assert record["size"] == size
        assert record["etag"] == hashlib.md5(data).hexdigest()    # the digests saw every byte, in order
        assert await w.read(record) == data
        names = {n for s in w.stores.values() for n, _ in s.list_archives()}
        assert names == {layout.archive_name(record["version_id"], i) for i in range(6)}
    run(tmp_path, scenario)


def test_a_body_in_one_byte_and_segment_sized_chunks_round_trips(tmp_path):
    async def scenario(w):
        data = unique(2 * SEG + 17, 7)
        chunks = [1] * 5 + [SEG] * 2 + [12]
        record = await w.store(data, chunks)
        assert await w.read(record) == data and record["etag"] == hashlib.md5(data).hexdigest()
    run(tmp_path, scenario)


@pytest.mark.parametrize("start,end", [(0, 0), (SEG - 1, SEG), (GET_WINDOW - 5, GET_WINDOW + 5),
                                       (SEG + 3, 3 * GET_WINDOW + 2), (5 * SEG, 7 * SEG - 1)])
def test_ranges_crossing_windows_read_exactly_those_bytes(tmp_path, start, end):
    async def scenario(w):
        data = unique(4 * GET_WINDOW + 999, 11)
        record = await w.store(data)
        assert await w.read(record, start, end) == data[start:end + 1]
    run(tmp_path, scenario)


@pytest.mark.parametrize("down", [(0, 1), (2, 5), (4, 5), (0, 3)])
def test_with_m_disks_down_reads_return_the_exact_bytes(tmp_path, down):
    async def scenario(w):
        data = unique(3 * GET_WINDOW + 123, 13)
        record = await w.store(data)
        for i in down:   # the disks die: their archives are gone and they are known down
            disk = record["disks"][i]
            await w.stores[disk].delete_archive(layout.archive_name(record["version_id"], i))
            w.cluster.mark_down(disk, "test: disk lost")
        assert await w.read(record) == data
        assert await w.read(record, GET_WINDOW - 1, 2 * GET_WINDOW + 1) == data[GET_WINDOW - 1:2 * GET_WINDOW + 2]
    run(tmp_path, scenario)


@pytest.mark.parametrize("fail_after", [0, 3, 9])
def test_a_client_gone_mid_body_leaves_no_object_and_no_fragments(tmp_path, fail_after):
    async def scenario(w):
        data = unique(4 * PUT_WINDOW, 17)
        with pytest.raises(ConnectionResetError):
            await w.store(data, [SEG // 2] * (len(data) // (SEG // 2)), fail_after=fail_after)
        assert w.leftovers() == []
    run(tmp_path, scenario)


def test_a_truncated_body_is_refused_and_leaves_nothing(tmp_path):
    async def scenario(w):
        data = unique(3 * PUT_WINDOW, 19)

        async def short():
            yield data[:-1]
        with pytest.raises(errors.IncompleteBody):
            await w.service.store(short(), len(data), BodyDigests({}, len(data), None), {"bucket": "b", "key": "k"})
        assert w.leftovers() == []
    run(tmp_path, scenario)


def test_one_disk_failing_mid_window_leaves_the_object_readable_on_the_others(tmp_path):
    async def scenario(w):
        w.cluster.disks["d2"] = FailingDisk(w.stores["d2"], after=4)
        data = unique(3 * PUT_WINDOW + 77, 23)
        record = await w.store(data)
        assert [name for name, _ in w.stores["d2"].list_archives()] == []
        assert await w.read(record) == data
    run(tmp_path, scenario)


def test_two_disks_failing_mid_window_fail_the_put_and_leave_nothing(tmp_path):
    async def scenario(w):
        w.cluster.disks["d1"] = FailingDisk(w.stores["d1"], after=3)
        w.cluster.disks["d4"] = FailingDisk(w.stores["d4"], after=6)
        with pytest.raises(QuorumLost):
            await w.store(unique(4 * PUT_WINDOW, 29))
        assert w.leftovers() == []
    run(tmp_path, scenario)


class GatedDisk:
    """A local disk that takes no archive bytes until `gate` is set (a stalled disk)."""

    def __init__(self, store: DiskStore, gate: asyncio.Event):
        self.store, self.gate = store, gate

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def put_archive(self, name, chunks):
        await self.gate.wait()
        return await self.store.put_archive(name, chunks)


def test_memory_stays_bounded_while_the_disks_do_not_keep_up(tmp_path):
    """With every disk stalled, the upload stops pulling the body after a few segments
    (the pipeline's DEPTH plus the archive queues), however large the body is; once the
    disks move, the whole body lands exactly. Checking that the count stops growing
    needs a window of time: it is a bound on what happens, not a synchronisation."""
    async def scenario(w):
        gate = asyncio.Event()
        for d in list(w.cluster.disks):
            w.cluster.disks[d] = GatedDisk(w.stores[d], gate)
        data = unique(40 * SEG, 31)
        pulled = []

        async def body():
            for at in range(0, len(data), SEG):
                pulled.append(at)
                yield data[at:at + SEG]
        put = asyncio.ensure_future(w.service.store(body(), len(data), BodyDigests({}, len(data), None),
                                                    {"bucket": "b", "key": "k"}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(pulled) < pipeline.DEPTH and loop.time() < deadline:
            await asyncio.sleep(0.01)
        settle = loop.time() + 1.0
        while loop.time() < settle:
            await asyncio.sleep(0.01)
        assert pipeline.DEPTH <= len(pulled) <= pipeline.DEPTH + 4, len(pulled)   # 4: 3 queued per archive + 1
        gate.set()
        record = await put
        assert len(pulled) == 40 and await w.read(record) == data
    run(tmp_path, scenario)


def test_a_lagging_digest_stops_the_body_being_read(tmp_path):
    """The digest chain is one thread and encoding several: when hashing falls behind (a
    loaded box, a fast client), the body must stop being read, or every segment the chain
    owes stays in memory (a 1 GiB PUT once held ~300 MiB). Hashing is held shut here; the
    upload may read only a few windows ahead, and once hashing resumes the object is
    exact."""
    import threading
    import time
    gate = threading.Event()

    class GatedDigests(BodyDigests):
        def update(self, chunk):
            gate.wait(30)
            super().update(chunk)

    async def scenario(w):
        segments = 40
        data = unique(segments * SEG, 29)
        pulled = 0

        async def body():
            nonlocal pulled
            for at in range(0, len(data), SEG):
                pulled += 1
                yield data[at:at + SEG]
        upload = asyncio.ensure_future(w.service.store(body(), len(data), GatedDigests({}, len(data), None),
                                                       {"bucket": "b", "key": "k"}))
        bound = 2 * pipeline.DEPTH + 2   # the encoders' window, the digests' window, one in hand
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and pulled <= bound and not upload.done():
            await asyncio.sleep(0.01)   # waiting for a breach that must not come
        held = pulled
        gate.set()
        record = await upload
        assert held <= bound, f"{held} of {segments} segments read while the digests were held"
        assert record["etag"] == hashlib.md5(data).hexdigest()
        assert await w.read(record) == data
    run(tmp_path, scenario)


def test_copies_of_a_replicated_block_share_one_record():
    from storage.objects.put import pack_records
    block = unique(4096, 41)
    other = unique(4096, 42)
    records = pack_records([block, bytes(block), bytes(block)], frozenset({0, 2}))
    assert records[1] is None
    assert records[0][0] is records[2][0]                          # one checksum for both copies
    assert b"".join(records[0]) == b"".join(records[2]) == layout.pack_record(block)
    assert layout.unpack_record(b"".join(records[2])) == block
    mixed = pack_records([block, other, memoryview(block)], frozenset({0, 1, 2}))
    assert [layout.unpack_record(b"".join(r)) for r in mixed] == [block, other, block]


def test_a_digest_failing_mid_body_fails_the_put_and_leaves_nothing(tmp_path):
    """The digests run in their own lane (digest_lane.py): an error there must reach the
    upload, stop it, and leave no fragment behind, not be lost in a worker thread."""
    class FailingDigests(BodyDigests):
        seen = 0

        def update(self, chunk):
            FailingDigests.seen += 1
            if FailingDigests.seen == 5:
                raise RuntimeError("test: digest failed")
            super().update(chunk)

    async def scenario(w):
        data = unique(6 * PUT_WINDOW, 37)

        async def body():
            for at in range(0, len(data), SEG):
                yield data[at:at + SEG]
        with pytest.raises(RuntimeError, match="digest failed"):
            await w.service.store(body(), len(data), FailingDigests({}, len(data), None), {"bucket": "b", "key": "k"})
        assert w.leftovers() == []
    run(tmp_path, scenario)


def test_concurrent_uploads_to_one_key_keep_their_own_bytes_and_digests(tmp_path):
    """Each upload has its own digest lane; several in flight at once, to the same key,
    with bodies that differ at every offset, must each come back exactly, with the MD5 of
    their own body."""
    async def scenario(w):
        bodies = [unique(2 * PUT_WINDOW + 1000 * i + 1, 100 + i) for i in range(6)]
        records = await asyncio.gather(*(w.store(b) for b in bodies))
        assert len({r["version_id"] for r in records}) == len(bodies)
        for data, record in zip(bodies, records):
            assert record["etag"] == hashlib.md5(data).hexdigest()
            assert await w.read(record) == data
    run(tmp_path, scenario)


def test_the_digest_lane_sees_segments_in_order_when_its_thread_is_slow(tmp_path):
    """The lane's one drain job at a time keeps the order; a slow update (a loaded core)
    must not let a later segment in first. The ETag is the MD5 of the body in order."""
    import time

    class SlowDigests(BodyDigests):
        def update(self, chunk):
            time.sleep(0.002 * (len(chunk) % 3))   # uneven, as a busy core would be
            super().update(chunk)

    async def scenario(w):
        data = unique(5 * PUT_WINDOW + 3, 43)
        record = await w.service.store(_in_chunks(data, [SEG - 1, SEG + 1, 7, SEG]), len(data),
                                       SlowDigests({}, len(data), None), {"bucket": "b", "key": "k"})
        assert record["etag"] == hashlib.md5(data).hexdigest()
        assert await w.read(record) == data
    run(tmp_path, scenario)


async def _in_chunks(data: bytes, sizes: list[int]):
    """`data` in chunks cycling through `sizes`."""
    at, n = 0, 0
    while at < len(data):
        size = sizes[n % len(sizes)]
        yield data[at:at + size]
        at, n = at + size, n + 1
