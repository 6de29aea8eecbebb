"""Changes judged on a version that a racing commit replaced: refused inside the index
transaction, and what they already wrote to the disks never comes back in a rebuild.

In-process disks and a real index. The race is made deterministic by holding the LMDB
write lock from a thread: the gateway's writer queues commits in order behind it, so the
commit that was asked for first lands first."""
from __future__ import annotations

import asyncio
import threading

import pytest

from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.index.rebuild import rebuild
from storage.s3.digests import BodyDigests

from .test_rebuild_multipart import B, data, world  # noqa: F401  (world: the fixture)


class HeldIndex:
    """The index's write lock, taken by a thread until `release()`."""

    def __init__(self, index):
        self.held, self.let_go = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=lambda: index.write(lambda ops: (self.held.set(), self.let_go.wait(30))))

    async def __aenter__(self):
        self.thread.start()
        assert await asyncio.to_thread(self.held.wait, 10)
        return self

    async def __aexit__(self, *exc):
        self.let_go.set()
        await asyncio.to_thread(self.thread.join, 10)


async def queued(w, task: asyncio.Task, count: int) -> None:
    """Wait until `count` commits wait behind the held lock (the task's among them)."""
    for _ in range(500):
        if w.writer.waiting() >= count or task.done():
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert not task.done(), task


async def in_order(w, first, second) -> tuple[asyncio.Task, asyncio.Task]:
    """Start two changes whose commits land in this order, `second` judged before `first` commits."""
    async with HeldIndex(w.index):
        a = asyncio.ensure_future(first)
        await queued(w, a, 1)
        b = asyncio.ensure_future(second)
        await queued(w, b, 2)
    return a, b


def rebuilt(w, tmp_path):
    index = Index(LmdbBackend(str(tmp_path / "rebuilt")))
    report = asyncio.run(rebuild(w.disks, index, list(w.cluster.volumes.values())))
    return index, report


def test_expiry_of_a_replaced_version_adds_no_delete_marker(world, tmp_path):
    """Lifecycle judged `old` expired; a PUT committed before the expiry's delete marker.
    The marker is refused in the transaction, and its disk record is ended for rebuilds."""
    w = world

    async def scenario():
        await w.buckets.create(B, {"owner": "me", "created": 1.0})
        await w.buckets.configure(B, {"versioning": "Enabled"})
        attrs = {"versioned": True}
        old = await w.objects.put(B, "k", _body(data(500, 1)), 500, _digests(), attrs)
        put, expire = await in_order(w, w.objects.put(B, "k", _body(data(600, 2)), 600, _digests(), attrs),
                                     w.objects.delete(B, "k", if_version=old["version_id"]))
        new = await put
        assert await expire is None
        assert w.index.get_object(B, "k")["version_id"] == new["version_id"]
        assert [r["version_id"] for r in w.index.key_history(B, "k")] == [new["version_id"], old["version_id"]]
        return new, old

    new, old = asyncio.run(scenario())
    index, _ = rebuilt(w, tmp_path)
    try:
        assert index.get_object(B, "k")["version_id"] == new["version_id"]
        assert [r["version_id"] for r in index.key_history(B, "k")] == [new["version_id"], old["version_id"]]
    finally:
        index.close()


def test_a_put_that_wins_over_an_expiry_survives_the_expirys_tombstone_in_a_rebuild(world, tmp_path):
    """Never-versioned bucket: the PUT began before the expiry wrote its tombstone and
    committed first. The live index keeps the PUT; so must a rebuild (a tombstone ends the
    version it deleted and older ones, not everything older than itself)."""
    w = world

    async def scenario():
        await w.buckets.create(B, {"owner": "me", "created": 1.0})
        old = await w.put("k", data(500, 1))
        put, expire = await in_order(w, w.put("k", data(600, 2)),
                                     w.objects.delete(B, "k", if_version=old["version_id"]))
        new = await put
        assert await expire is None
        assert w.index.get_object(B, "k")["version_id"] == new["version_id"]
        return new

    new = asyncio.run(scenario())
    index, _ = rebuilt(w, tmp_path)
    try:
        assert (index.get_object(B, "k") or {}).get("version_id") == new["version_id"]
    finally:
        index.close()


def test_complete_refused_in_its_commit_is_not_completed_by_a_rebuild(world, tmp_path):
    """Part 1 is uploaded again while Complete runs; Complete's commit refuses the stale
    part (InvalidPart). Its object record is on the disks already: a rebuild must neither
    install that object nor end the upload, which is still open."""
    w = world

    async def scenario():
        await w.buckets.create(B, {"owner": "me", "created": 1.0})
        up = await w.multipart.create(B, "mp", {"owner": "me"})
        p1 = await w.part(up, 1, data(2000, 1))
        again, complete = await in_order(w, w.part(up, 1, data(2500, 2)), w.multipart.complete(up, [(1, p1["etag"])]))
        newer = await again
        with pytest.raises(Exception) as e:
            await complete
        assert type(e.value).__name__ == "InvalidPart"
        assert w.index.get_object(B, "mp") is None
        return up, newer

    up, newer = asyncio.run(scenario())
    index, _ = rebuilt(w, tmp_path)
    try:
        assert index.get_object(B, "mp") is None
        dump = w.dump(index)
        assert list(dump["uploads"]) == [up["upload_id"]]
        assert [p["version_id"] for p in dump["uploads"][up["upload_id"]][1]] == [newer["version_id"]]
    finally:
        index.close()


async def _body(payload: bytes):
    yield payload


def _digests():
    return BodyDigests({}, None, None)

