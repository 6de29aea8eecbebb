"""The index rebuild's multipart rules, on in-process disks (no processes, no network).

A rebuilt index must say what the live one said: completed multipart objects win over
their parts and compete with plain versions by age, deletes stay deleted, unfinished
uploads come back with their newest parts, aborted and completed uploads do not come
back even when removing their archives failed (simulated by putting the files back).
"""
from __future__ import annotations

import asyncio
import glob
import os

import pytest

from storage.cluster import Cluster
from storage.index.batcher import IndexWriter
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.index.rebuild import rebuild
from storage.index.uploads import UploadTxn
from storage.node.store import DiskStore
from storage.index import parts as P
from storage.objects.buckets import BucketService
from storage.objects.multipart import MultipartService
from storage.objects.service import ObjectService, Policy
from storage.placement.volumes import DiskInfo, build_volumes
from storage.s3.digests import BodyDigests

SEG = 64 << 10
B = "bkt"


async def body(data: bytes):
    for i in range(0, len(data), 50_000):
        yield data[i:i + 50_000]


def data(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


class World:
    def __init__(self, root: str):
        self.root = root
        # Archives as files (pack_threshold=0): these tests reach into archive files by path.
        # Repair of packed archives is covered by tests/cluster/test_repair.py, where small
        # objects go to packs.
        self.disks = {f"d{i}": DiskStore(f"d{i}", os.path.join(root, f"d{i}"), pack_threshold=0).open()
                      for i in range(6)}
        self.infos = [DiskInfo(d, f"n{i}", "z1") for i, d in enumerate(self.disks)]
        self.index = Index(LmdbBackend(os.path.join(root, "index")))
        self.writer = IndexWriter(self.index)
        self.cluster = Cluster(self.disks, self.infos)
        self.cluster.load_volumes(self.index, {6, 3})
        policies = {"ec": Policy.parse("ec", "ec:4+2"), "replica": Policy.parse("replica", "replica:3")}
        self.objects = ObjectService(self.cluster, self.index, self.writer, policies, "ec", "replica",
                                     1000, SEG)
        self.multipart = MultipartService(self.objects)
        self.buckets = BucketService(self.index, self.writer, self.objects, self.multipart)

    async def put(self, key: str, payload: bytes) -> dict:
        return await self.objects.put(B, key, body(payload), len(payload), BodyDigests({}, None, None), {})

    async def part(self, upload: dict, number: int, payload: bytes) -> dict:
        return await self.multipart.upload_part(upload, number, body(payload), len(payload),
                                                BodyDigests({}, None, None))

    def stash(self, version_id: str) -> list[tuple[str, bytes]]:
        """Copies of a version's archive files, to put back as if removing them had failed."""
        out = []
        for path in glob.glob(os.path.join(self.root, "d*", "archives", "*", f"{version_id}.*")):
            with open(path, "rb") as f:
                out.append((path, f.read()))
        return out

    @staticmethod
    def unstash(saved: list[tuple[str, bytes]]) -> None:
        for path, raw in saved:
            with open(path, "wb") as f:
                f.write(raw)

    def rebuild_into(self, index: Index):
        """`pocket index rebuild` from these disks alone into `index`; its report."""
        volumes = [v for width in (3, 6) for v in build_volumes(self.infos, width)]
        return asyncio.run(rebuild(self.disks, index, volumes))

    def dump(self, index: Index) -> dict:
        with index.read() as ops:
            objects = {k: r for k, r in ops.iter_objects(B)}
            uploads = {u["upload_id"]: (u, UploadTxn(ops).all_parts(u["upload_id"]))
                       for u in UploadTxn(ops).iter_bucket_uploads(B)}
        return {"objects": objects, "uploads": uploads}


async def settle():
    """Let background archive removals finish."""
    for _ in range(3):
        await asyncio.gather(*(t for t in asyncio.all_tasks() if t is not asyncio.current_task()))
        await asyncio.sleep(0.01)


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "MIN_PART_SIZE", 1000)
    w = World(str(tmp_path))
    yield w
    w.index.close()


def test_rebuild_matches_the_live_index(world, make_index):
    w = world

    async def scenario():
        await w.buckets.create(B, {"owner": "me", "created": 1.0})
        # completed, with a re-uploaded part and an unlisted one whose removals "fail"
        up = await w.multipart.create(B, "done", {"content_type": "text/x", "owner": "me"})
        p1 = await w.part(up, 1, data(3000, 1))
        old2 = await w.part(up, 2, data(3000, 2))
        saved = w.stash(old2["version_id"])
        p2 = await w.part(up, 2, data(2000, 3))
        p9 = await w.part(up, 9, data(500, 4))
        saved += w.stash(p9["version_id"])
        done = await w.multipart.complete(up, [(1, p1["etag"]), (2, p2["etag"])])
        # unfinished: part 1 uploaded twice, the older one's removal "fails"
        open_up = await w.multipart.create(B, "open", {"owner": "me"})
        old1 = await w.part(open_up, 1, data(100, 5))
        saved += w.stash(old1["version_id"])
        await w.part(open_up, 1, data(200, 6))
        await w.part(open_up, 3, data(5000, 7))
        # aborted, its removal "fails"
        gone = await w.multipart.create(B, "aborted", {"owner": "me"})
        g1 = await w.part(gone, 1, data(3000, 8))
        saved += w.stash(g1["version_id"])
        await w.multipart.abort(gone)
        # a completed object that was deleted, one overwritten by a PUT, one overwriting a PUT
        for key in ("deleted", "overwritten", "overwrites"):
            if key == "overwrites":
                await w.put(key, data(4000, 9))
            u = await w.multipart.create(B, key, {"owner": "me"})
            part = await w.part(u, 1, data(1500, 10))
            await w.multipart.complete(u, [(1, part["etag"])])
        await w.objects.delete(B, "deleted")
        await w.put("overwritten", data(10, 11))
        await settle()
        w.unstash(saved)
        return done

    done = asyncio.run(scenario())
    live = w.dump(w.index)
    assert sorted(live["objects"]) == ["done", "overwrites", "overwritten"]
    assert [u["key"] for u, _ in live["uploads"].values()] == ["open"]

    rebuilt_index = make_index("rebuilt")
    report = w.rebuild_into(rebuilt_index)
    try:
        assert w.dump(rebuilt_index) == live
    finally:
        rebuilt_index.close()
    assert (report.objects, report.uploads, report.parts, report.unreadable) == (3, 1, 2, 0)
    assert live["objects"]["done"] == done and "parts" in done
    assert live["objects"]["overwrites"]["etag"].endswith("-1")
    assert "parts" not in live["objects"]["overwritten"]

    async def read_back():
        return b"".join([c async for c in w.objects.read(done, 0, done["size"] - 1)])
    assert asyncio.run(read_back()) == data(3000, 1) + data(2000, 3)


def test_rebuild_skips_a_multipart_object_whose_part_is_lost(world, make_index):
    w = world

    async def scenario():
        await w.buckets.create(B, {"owner": "me", "created": 1.0})
        await w.put("k", data(3000, 1))
        up = await w.multipart.create(B, "k", {"owner": "me"})
        p1 = await w.part(up, 1, data(3000, 2))
        p2 = await w.part(up, 2, data(3000, 3))
        await w.multipart.complete(up, [(1, p1["etag"]), (2, p2["etag"])])
        await settle()
        return p2

    p2 = asyncio.run(scenario())
    for path in glob.glob(os.path.join(w.root, "d*", "archives", "*", f"{p2['version_id']}.*"))[:3]:
        os.unlink(path)  # 3 of 6 fragments gone: fewer than k = 4
    rebuilt_index = make_index("rebuilt")
    report = w.rebuild_into(rebuilt_index)
    # the PUT it replaced is gone from the disks, so nothing is left to serve
    assert (report.unreadable, report.objects) == (1, 0)


def test_rebuild_ignores_a_complete_that_crashed_before_its_commit_then_was_aborted(world, make_index):
    """Complete wrote its object record to the disks and the gateway died before the index
    commit; after restart the client aborted the upload, which removed the parts. The
    object never existed: the rebuild must agree and report nothing unreadable."""
    w = world

    async def scenario():
        await w.buckets.create(B, {"owner": "me", "created": 1.0})
        await w.put("k", data(3000, 1))
        up = await w.multipart.create(B, "k", {"owner": "me"})
        p1 = await w.part(up, 1, data(3000, 2))

        async def crash(fn):
            raise SystemExit("gateway killed")
        w.writer.submit, submit = crash, w.writer.submit
        with pytest.raises(SystemExit):
            await w.multipart.complete(up, [(1, p1["etag"])])
        w.writer.submit = submit
        await w.multipart.abort(up)
        await settle()

    asyncio.run(scenario())
    live = w.dump(w.index)
    assert sorted(live["objects"]) == ["k"] and not live["uploads"]
    rebuilt_index = make_index("rebuilt")
    report = w.rebuild_into(rebuilt_index)
    try:
        assert w.dump(rebuilt_index) == live
    finally:
        rebuilt_index.close()
    assert (report.unreadable, report.objects) == (0, 1)


def test_rebuild_keeps_an_acknowledged_delete_of_a_key_whose_put_never_committed(world, make_index):
    """A PUT stored its archives and the gateway died before the index commit (the client
    got no answer); then the client deleted the key, which the index did not have. The
    DELETE was acknowledged, so a rebuild from the disks must not bring the PUT back."""
    w = world

    async def scenario():
        await w.buckets.create(B, {"owner": "me", "created": 1.0})
        payload = data(3000, 1)
        await w.objects.store(body(payload), len(payload), BodyDigests({}, None, None), {"bucket": B, "key": "k"})
        assert await w.objects.delete(B, "k") is None
        await settle()

    asyncio.run(scenario())
    assert not w.dump(w.index)["objects"]
    rebuilt_index = make_index("rebuilt")
    report = w.rebuild_into(rebuilt_index)
    try:
        assert not w.dump(rebuilt_index)["objects"], "an acknowledged DELETE came undone"
    finally:
        rebuilt_index.close()
    assert report.objects == 0 and report.tombstoned == 1
