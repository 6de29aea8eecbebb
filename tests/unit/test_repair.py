"""Unit tests for storage/durability and the repair queue: an in-process cluster of six
local disk folders, no processes, no network."""
from __future__ import annotations

import asyncio
import math
import os
import random
import time

import pytest

from storage import layout
from storage.cluster import Cluster
from storage.durability.queue import RepairQueue
from storage.durability.repair import Repairer
from storage.durability.scrub import Scrubber
from storage.index import repairs
from storage.index.batcher import IndexWriter
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.index.uploads import UploadTxn
from storage.node.disk_scrub import DiskScrubber
from storage.node.store import DiskStore
from storage.objects.ids import new_id
from storage.index import parts as parts_mod
from storage.objects.multipart import MultipartService
from storage.objects.service import ObjectService, Policy
from storage.placement.volumes import DiskInfo
from storage.s3.digests import BodyDigests
from storage.throttle import Throttle
from storage.tools import status as status_mod

SEG = 16 << 10


def unique(size: int, seed) -> bytes:
    """Seeded bytes unique at every offset: a repair that rebuilt the wrong segment reads differently."""
    return random.Random(seed).randbytes(size)


class World:
    """Six local disks, an index, the object service and the durability machinery."""

    def __init__(self, root, disks: int = 6):
        self.root = root
        # Archives as files (pack_threshold=0): these tests reach into archive files by path.
        # Repair of packed archives is covered by tests/cluster/test_repair.py, where small
        # objects go to packs.
        self.disks = {f"d{i}": DiskStore(f"d{i}", os.path.join(root, f"d{i}"), pack_threshold=0).open()
                      for i in range(disks)}
        infos = [DiskInfo(d, f"node{i}", "z1") for i, d in enumerate(self.disks)]
        self.index = Index(LmdbBackend(os.path.join(root, "index")))
        self.writer = IndexWriter(self.index)
        self.cluster = Cluster(self.disks, infos)
        self.cluster.load_volumes(self.index, {6, 3})
        policies = {"ec": Policy.parse("ec", "ec:4+2"), "replica": Policy.parse("replica", "replica:3")}
        self.objects = ObjectService(self.cluster, self.index, self.writer, policies, "ec", "replica",
                                     4096, SEG, timeout=5)
        self.queue = RepairQueue(self.index, self.writer)
        self.objects.on_degraded = lambda record, missing: self.queue.add_later(record, missing, "put")
        self.scrubber = Scrubber(self.cluster, self.index, self.queue, rate=0, orphan_grace=60,
                                 writes=self.objects.writes)
        self.repairer = Repairer(self.cluster, self.index, self.queue, concurrency=3)
        self.disk_scrubbers = [DiskScrubber(d, rate=0, schedule=False) for d in self.disks.values()]
        for s in self.disk_scrubbers:
            s.start()
        self.index.create_bucket("b")

    async def put(self, key: str, data: bytes) -> dict:
        async def body():
            yield data
        return await self.objects.put("b", key, body(), len(data), BodyDigests({}, len(data), None),
                                      {"content_type": "x/y", "meta": {}, "headers": {}, "owner": "o"})

    async def get(self, record: dict) -> bytes:
        return b"".join([c async for c in self.objects.read(record, 0, record["size"] - 1)])

    def path(self, record: dict, i: int) -> str:
        disk = self.cluster.volumes[record["volume"]]["disks"][i]
        return self.disks[disk].archive_path(layout.archive_name(record["version_id"], i))

    async def close(self):
        for s in self.disk_scrubbers:
            await s.stop()
        await self.writer.aclose()
        self.index.close()


def run(root, fn, disks: int = 6):
    async def main():
        w = World(str(root), disks)
        try:
            return await fn(w)
        finally:
            await w.close()
    return asyncio.run(main())


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# the queue ---------------------------------------------------------------------------------
def _rec(vid: str, k=4, m=2) -> dict:
    return {"bucket": "b", "key": f"k{vid[-2:]}", "version_id": vid, "volume": "w6-0000", "k": k, "m": m}


def test_queue_orders_by_spare_redundancy_and_merges(make_index):
    index = make_index("ix")
    v = [f"{i:032x}" for i in range(1, 6)]
    index.write(lambda ops: repairs.add(ops, _rec(v[0]), {0: ("missing", "m")}, "scrub", 1.0))
    index.write(lambda ops: repairs.add(ops, _rec(v[1]), {1: ("corrupt", "c"), 2: ("missing", "m")}, "read", 2.0))
    index.write(lambda ops: repairs.add(ops, _rec(v[2], 1, 2), {0: ("missing", "m")}, "put", 3.0))
    index.write(lambda ops: repairs.add(ops, _rec(v[3]), {0: ("missing", "m"), 1: ("missing", "m"),
                                                           2: ("missing", "m")}, "scrub", 4.0))
    with index.read() as ops:
        order = [e["version_id"] for e in repairs.scan(ops)]
        assert repairs.length(ops) == 4
    # v3 is unreadable (-1 spare), v1 has 0 spare, v2 (replica down to 2) and v0 have 1 spare
    assert order == [v[3], v[1], v[0], v[2]]
    # a new report for v0 merges and moves it up; corrupt wins over missing for one index
    index.write(lambda ops: repairs.add(ops, _rec(v[0]), {0: ("corrupt", "rot"), 3: ("missing", "m")}, "read", 5.0))
    with index.read() as ops:
        e = repairs.get(ops, v[0])
        assert (e["missing"], e["corrupt"], e["sources"], e["first_seen"]) == ([3], [0], ["read", "scrub"], 1.0)
        # now 0 spare like v1: equal priority, older version first
        assert [x["version_id"] for x in repairs.scan(ops)][:3] == [v[3], v[0], v[1]]
    assert index.write(lambda ops: repairs.resolve(ops, v[0], [0]))["missing"] == [3]
    assert index.write(lambda ops: repairs.resolve(ops, v[0], [3])) is None
    with index.read() as ops:
        assert repairs.get(ops, v[0]) is None and repairs.length(ops) == 3
        assert len(list(repairs.iter_entries(ops))) == 3
    index.close()


def test_repaired_fragments_are_not_queued_from_older_evidence_and_the_marks_expire(make_index):
    """A fragment repaired at t=100 is not queued from evidence gathered at t=99 (nor at
    t=100), is from evidence at t=101; other fragments of the version are unaffected; the
    mark is dropped once older than MARK_SECONDS, while a younger one stays."""
    index = make_index("marks")
    v, w = f"{7:032x}", f"{8:032x}"
    index.write(lambda ops: repairs.resolve(ops, v, [2], 100.0))
    index.write(lambda ops: repairs.resolve(ops, w, [0], 5000.0))
    bad = {2: ("corrupt", "rot"), 4: ("missing", "m")}
    entry = index.write(lambda ops: repairs.add(ops, _rec(v), bad, "scrub", 102.0, {2: 99.0, 4: 99.0}))
    assert (entry["corrupt"], entry["missing"]) == ([], [4])
    assert index.write(lambda ops: repairs.add(ops, _rec(w), {0: ("corrupt", "r")}, "scrub", 102.0, {0: 100.0})) is None
    entry = index.write(lambda ops: repairs.add(ops, _rec(v), bad, "scrub", 103.0, {2: 101.0, 4: 101.0}))
    assert (entry["corrupt"], entry["missing"]) == ([2], [4])
    assert index.write(lambda ops: repairs.forget_repairs(ops, 100.0 + repairs.MARK_SECONDS + 1)) == 1
    with index.read() as ops:
        assert ops.meta_under(repairs.REPAIRED) == {w: {"0": 5000.0}}
    index.close()


# repair -------------------------------------------------------------------------------------
# repair -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,lost", [(3 * SEG + 123, [0, 5]), (3 * SEG + 123, [2, 4]), (SEG, [1]),
                                       (1000, [0, 2]), (0, [3])])
def test_repair_rebuilds_archives_byte_identical(tmp_path, size, lost):
    async def go(w):
        data = random.Random(size).randbytes(size)
        rec = await w.put("obj", data)
        n = rec["k"] + rec["m"]
        originals = {i: read(w.path(rec, i)) for i in range(n)}
        lost_here = [i for i in lost if i < n]
        for i in lost_here:
            os.unlink(w.path(rec, i))
        scrub = await w.scrubber.run_once()
        assert sorted(r["index"] for r in scrub.missing) == lost_here
        report = await w.repairer.run_once()
        assert report.fragments == len(lost_here) and report.remaining == 0, report
        for i in range(n):
            assert read(w.path(rec, i)) == originals[i], f"fragment {i}"
        assert await w.get(rec) == data if size else True
    run(tmp_path, go)


def test_corruption_of_any_part_is_found_and_fixed(tmp_path):
    async def go(w):
        recs = [await w.put(f"o{i}", random.Random(i).randbytes(2 * SEG + i)) for i in range(4)]
        originals = {(r["key"], i): read(w.path(r, i)) for r in recs for i in range(6)}
        spots = {0: 3, 1: layout.HEADER_SIZE + 40, 2: -5, 3: -30}   # header, a record, footer, trailer
        for r, (i, at) in zip(recs, spots.items()):
            raw = bytearray(read(w.path(r, i)))
            raw[at] ^= 1
            with open(w.path(r, i), "wb") as f:
                f.write(raw)
        with open(w.path(recs[0], 4), "r+b") as f:   # and one truncated archive
            f.truncate(100)
        scrub = await w.scrubber.run_once()
        assert sorted((c["key"], c["index"]) for c in scrub.corrupt) == \
            [("o0", 0), ("o0", 4), ("o1", 1), ("o2", 2), ("o3", 3)]
        assert scrub.orphans_removed == [] and scrub.missing == []
        assert w.queue.at_risk() == {"4+2": {4: 1, 5: 3}}
        report = await w.repairer.run_once()
        assert report.fragments == 5 and report.remaining == 0
        for (key, i), raw in originals.items():
            r = next(x for x in recs if x["key"] == key)
            assert read(w.path(r, i)) == raw
        assert (await w.scrubber.run_once()).corrupt == []
    run(tmp_path, go)


async def _rotten_and_found(w, key: str, seed: int, i: int, at: int) -> tuple[dict, bytes, bytes]:
    """An object whose fragment `i` rotted at record byte `at`, found by a scrub pass:
    (its record, the fragment's good bytes, its rotten bytes)."""
    rec = await w.put(key, random.Random(seed).randbytes(2 * SEG + seed))
    original = read(w.path(rec, i))
    raw = bytearray(original)
    raw[layout.HEADER_SIZE + at] ^= 1 << seed % 8
    with open(w.path(rec, i), "wb") as f:
        f.write(raw)
    assert [c["index"] for c in (await w.scrubber.run_once()).corrupt] == [i]
    return rec, original, bytes(raw)


def test_a_repair_finishing_during_a_scrub_pass_is_not_queued_again(tmp_path):
    """A pass fetches the disks' findings first and queues their damage after its index
    walk; a repair that finishes in between (the gateway's repairer, or a one-shot `pocket
    repair` beside it) must not be queued again from the findings it made stale: the entry
    would wait for a second, needless repair (test_pocket_up's one-shot repair beside `pocket
    up` saw it stay queued)."""
    async def go(w):
        rec, original, _ = await _rotten_and_found(w, "o", 3, 2, 40)
        fetched = w.scrubber._findings

        async def then_repaired(report, listings):
            states = await fetched(report, listings)
            assert (await w.repairer.run_once()).fragments == 1   # lands between findings and queueing
            return states
        w.scrubber._findings = then_repaired
        second = await w.scrubber.run_once()
        assert read(w.path(rec, 2)) == original
        assert second.corrupt == [] and w.queue.length() == 0, w.queue.entries()
    run(tmp_path, go)


def test_a_repair_finishing_after_the_second_look_is_not_queued_again(tmp_path):
    """The pass asks the disks again just before queueing; a repair finishing right after
    that second look must not be queued again either: it marks the fragment repaired later
    than the look. Damage found after the repair is queued as ever."""
    async def go(w):
        rec, original, raw = await _rotten_and_found(w, "o2", 4, 3, 99)
        looked = w.scrubber._still_corrupt

        async def then_repaired(held):
            kept = await looked(held)
            assert [i for _, damage, _, _ in kept for i in damage] == [3]   # still reported when asked
            assert (await w.repairer.run_once()).fragments == 1            # lands before the queueing
            return kept
        w.scrubber._still_corrupt = then_repaired
        second = await w.scrubber.run_once()
        assert read(w.path(rec, 3)) == original
        assert second.corrupt == [] and w.queue.length() == 0, w.queue.entries()

        w.scrubber._still_corrupt = looked
        with open(w.path(rec, 3), "wb") as f:     # rot again, after the repair
            f.write(raw)
        assert [c["index"] for c in (await w.scrubber.run_once()).corrupt] == [3]
        assert [e["corrupt"] for e in w.queue.entries()] == [[3]]
    run(tmp_path, go)


@pytest.mark.parametrize("size", [2 * SEG + 77, 3000])   # EC 4+2, and replica:3
def test_repair_reads_past_a_corrupt_record_where_it_found_the_manifest(tmp_path, size):
    """A small archive set is repaired from an archive read whole (manifest and records in
    one request); when that archive has a bad record, the rebuilt fragment still comes out
    byte-identical, from the other fragments, and the bad one is queued in its turn."""
    async def go(w):
        data = unique(size, size)
        rec = await w.put("obj", data)
        n = rec["k"] + rec["m"]
        originals = {i: read(w.path(rec, i)) for i in range(n)}
        os.unlink(w.path(rec, n - 1))                       # lost: the last fragment
        raw = bytearray(originals[0])                       # and fragment 0, read first, rotten
        raw[layout.HEADER_SIZE + layout.RECORD_OVERHEAD + 5] ^= 1
        with open(w.path(rec, 0), "wb") as f:
            f.write(raw)
        await w.queue.add(rec, {n - 1: ("missing", "test")}, "test")
        report = await w.repairer.run_once()
        assert report.fragments == 1 and not report.failed, report
        assert read(w.path(rec, n - 1)) == originals[n - 1]
        await w.queue.drain()
        assert [(e["missing"], e["corrupt"]) for e in w.queue.entries()] == [([], [0])]
        report = await w.repairer.run_once()
        assert read(w.path(rec, 0)) == originals[0] and report.remaining == 0
        assert await w.get(rec) == data
    run(tmp_path, go)


def test_unrecoverable_and_down_disks_stay_queued(tmp_path):
    async def go(w):
        lost = await w.put("lost", unique(3 * SEG, "lost"))
        waiting = await w.put("waiting", unique(3 * SEG, "waiting"))
        for i in (0, 1, 4):
            os.unlink(w.path(lost, i))
        disk = w.cluster.volumes[waiting["volume"]]["disks"][2]
        os.unlink(w.path(waiting, 2))
        await w.scrubber.run_once()
        w.cluster.mark_down(disk, "test")
        report = await w.repairer.run_once()
        assert [f["key"] for f in report.failed] == ["lost"]
        assert [d["key"] for d in report.deferred] == ["waiting"]
        assert report.remaining == 2
        entries = {e["key"]: e for e in w.queue.entries()}
        assert entries["lost"]["attempts"] == 1 and entries["lost"]["last_error"]
        assert [e["key"] for e in w.queue.entries()] == ["lost", "waiting"]   # least spare first
        w.cluster.mark_up(disk)
        report = await w.repairer.run_once()
        assert report.fragments == 1 and report.remaining == 1
    run(tmp_path, go)


def test_repair_rate_is_honoured(tmp_path):
    """repair.rate caps the bytes rebuilt per second, measured around the whole repair."""
    async def go(w):
        data = random.Random(5).randbytes(40 * SEG)
        rec = await w.put("big", data)
        originals = {i: read(w.path(rec, i)) for i in (1, 4)}
        for i in originals:
            os.unlink(w.path(rec, i))
        await w.scrubber.run_once()
        rate = 150_000
        w.repairer = Repairer(w.cluster, w.index, w.queue, concurrency=3, rate=rate)
        started = time.monotonic()
        report = await w.repairer.run_once()
        elapsed = time.monotonic() - started
        assert report.fragments == 2 and report.remaining == 0
        assert report.bytes_written > 2 * rate
        assert elapsed >= report.bytes_written * 0.95 / rate, (elapsed, report.bytes_written)
        assert all(read(w.path(rec, i)) == raw for i, raw in originals.items())
        # unlimited, the same repair is much faster: the limit, not the machine, set the pace
        for i in originals:
            os.unlink(w.path(rec, i))
        await w.scrubber.run_once()
        w.repairer = Repairer(w.cluster, w.index, w.queue, concurrency=3)
        started = time.monotonic()
        assert (await w.repairer.run_once()).fragments == 2
        assert time.monotonic() - started < elapsed / 2
    run(tmp_path, go)


def test_degraded_put_is_queued_with_the_object(tmp_path):
    async def go(w):
        w.cluster.mark_down("d3", "test")
        rec = await w.put("deg", unique(2 * SEG, "deg"))
        await w.queue.drain()
        down = w.cluster.volumes[rec["volume"]]["disks"].index("d3")
        [entry] = w.queue.entries()
        assert entry["version_id"] == rec["version_id"] and entry["missing"] == [down]
        assert entry["sources"] == ["put"]
        w.cluster.mark_up("d3")
        assert (await w.repairer.run_once()).fragments == 1
        assert os.path.exists(w.path(rec, down))
    run(tmp_path, go)


def test_replaced_versions_leave_the_queue_and_become_orphans(tmp_path):
    async def go(w):
        old = await w.put("k", unique(SEG, 1))
        os.unlink(w.path(old, 1))
        await w.scrubber.run_once()
        new = await w.put("k", unique(SEG, 2))
        await w.objects.drain()             # the old version's archives are removed in the background
        report = await w.repairer.run_once()
        assert report.dropped == 1 and report.remaining == 0
        assert not any(os.path.exists(w.path(old, i)) for i in range(6))
        assert all(os.path.exists(w.path(new, i)) for i in range(6))
    run(tmp_path, go)


def test_multipart_parts_are_checked_repaired_and_kept(tmp_path, monkeypatch):
    """A completed multipart object's bytes are its parts' archives, and an open upload's
    parts are referenced too: both are scrubbed and repaired, neither is an orphan."""
    monkeypatch.setattr(parts_mod, "MIN_PART_SIZE", 1)

    async def go(w):
        mp = MultipartService(w.objects)
        w.scrubber.orphan_grace = 0
        d1, d2, d3 = (random.Random(i).randbytes(2 * SEG + 100 * i) for i in (1, 2, 3))

        async def part(upload, number, data):
            async def body():
                yield data
            return await mp.upload_part(upload, number, body(), len(data), BodyDigests({}, len(data), None))
        done = await mp.create("b", "done", {"content_type": "x/y"})
        p1, p2 = await part(done, 1, d1), await part(done, 2, d2)
        obj = await mp.complete(done, [(1, p1["etag"]), (2, p2["etag"])])
        pending = await mp.create("b", "pending", {})
        p3 = await part(pending, 1, d3)
        originals = {(p["version_id"], i): read(w.path(p, i)) for p in (p1, p2, p3) for i in range(6)}
        os.unlink(w.path(p1, 0))
        os.unlink(w.path(p3, 5))
        with open(w.path(p2, 3), "r+b") as f:
            f.seek(layout.HEADER_SIZE + 20)
            f.write(b"rot")
        scrub = await w.scrubber.run_once()
        assert scrub.orphans_removed == [] and scrub.versions == 3
        assert sorted((r["version_id"], r["index"]) for r in scrub.missing) == \
            sorted([(p1["version_id"], 0), (p3["version_id"], 5)])
        assert [(r["version_id"], r["index"]) for r in scrub.corrupt] == [(p2["version_id"], 3)]
        report = await w.repairer.run_once()
        assert report.fragments == 3 and report.remaining == 0
        for (vid, i), raw in originals.items():
            p = next(x for x in (p1, p2, p3) if x["version_id"] == vid)
            assert read(w.path(p, i)) == raw
        assert await w.get(obj) == d1 + d2
        # An upload the index forgot without its parts being removed: they are orphans now.
        w.index.write(lambda ops: UploadTxn(ops).delete_upload("b", "pending", pending["upload_id"]))
        scrub = await w.scrubber.run_once()
        assert {r["version_id"] for r in scrub.orphans_removed} == {p3["version_id"]}
        assert len(scrub.orphans_removed) == 6
    run(tmp_path, go)


def test_orphans_and_the_safety_valve(tmp_path):
    async def go(w):
        recs = [await w.put(f"o{i}", unique(1000, i)) for i in range(25)]   # replica:3
        w.scrubber.orphan_grace = 0
        # The index loses every object and the bucket: nothing of an unknown bucket goes.
        w.index.write(lambda ops: [ops.delete_object("b", r["key"]) for r in recs] and ops.delete_bucket("b"))
        scrub = await w.scrubber.run_once(force_orphans=True)
        assert scrub.orphans_removed == [] and len(scrub.orphans_kept) == 25 * 3
        assert {row["why"] for row in scrub.orphans_kept} == {"bucket not in the index"}
        # The bucket is known but its objects are not: too much at once, the valve holds.
        w.index.create_bucket("b")
        scrub = await w.scrubber.run_once()
        assert scrub.orphans_removed == [] and {row["why"] for row in scrub.orphans_kept} == {"safety valve"}
        assert all(os.path.exists(w.path(r, 0)) for r in recs)
        # Forced, every unreferenced version goes; the one put back stays.
        w.index.write(lambda ops: ops.put_object("b", "o0", recs[0]))
        forced = await w.scrubber.run_once(force_orphans=True)
        assert len(forced.orphans_removed) == 24 * 3
        assert os.path.exists(w.path(recs[0], 0)) and not os.path.exists(w.path(recs[1], 0))
    run(tmp_path, go)


def test_young_orphans_are_kept(tmp_path):
    async def go(w):
        rec = await w.put("o", unique(1000, "q"))      # replica:3
        w.index.write(lambda ops: ops.delete_object("b", "o"))
        scrub = await w.scrubber.run_once()        # grace 60 s: the version is seconds old
        assert scrub.orphans_removed == [] and scrub.orphans_young == 3
        assert os.path.exists(w.path(rec, 0))
    run(tmp_path, go)


def test_scrub_progress_is_kept_for_status(tmp_path):
    async def go(w):
        await w.put("a", unique(3 * SEG, "a"))
        scrub = await w.scrubber.run_once()
        saved = w.queue.progress("durability.scrub")
        assert saved["archives"] == scrub.archives == 6 and saved["running"] is False
        assert saved["bytes_verified"] == saved["bytes_total"] == scrub.bytes_verified
    run(tmp_path, go)


# pacing and the durability model ----------------------------------------------------------
def test_pacer_holds_the_rate():
    async def go():
        pacer = Throttle(rate=1 << 20)
        started = time.monotonic()
        for _ in range(4):
            await pacer.take(64 << 10)
        return time.monotonic() - started
    assert 0.2 < asyncio.run(go()) < 1.0


def test_durability_model():
    # ec:4+2 at 2% AFR and a day to repair: 6·5·4 failure paths, μ² in the numerator
    lam, mu = 0.02 / 8760, 1 / 24
    assert math.isclose(status_mod.mttdl_hours(4, 2, 0.02, 24), mu ** 2 / (lam ** 3 * 120))
    p_ec = status_mod.annual_loss_probability(4, 2, 0.02, 24)
    p_rep = status_mod.annual_loss_probability(1, 2, 0.02, 24)
    assert 1e-9 < p_ec < 1e-7 and p_rep < p_ec     # 3 copies: fewer disks, same tolerance
    assert status_mod.annual_loss_probability(4, 2, 0.02, 240) > 50 * p_ec   # slower repair, ~100x worse
    assert status_mod.annual_loss_probability(4, 0, 0.02, 24) == pytest.approx(1 - math.exp(-0.08))


def test_scrub_finishes_a_delete_interrupted_after_its_tombstones(tmp_path):
    """The gateway died between writing a DELETE's tombstones and its index commit: the
    index still serves the object, the disks say deleted. A scrub makes the index agree
    with the disks (what a rebuild would say) and collects the archives; a version
    written after the tombstone is left alone."""
    async def scenario(w):
        doomed = await w.put("doomed", unique(50_000, "d"))
        kept = await w.put("kept", unique(50_000, "k"))
        volume = w.cluster.volumes[doomed["volume"]]
        await w.objects.put_records(volume, {"kind": "tombstone", "bucket": "b", "key": "doomed",
                                             "version_id": doomed["version_id"], "deleted": time.time()}, 5)
        newer = await w.put("kept", unique(50_000, "n"))       # a tombstone of the replaced version: no effect
        await w.objects.put_records(volume, {"kind": "tombstone", "bucket": "b", "key": "kept",
                                             "version_id": kept["version_id"], "deleted": time.time()}, 5)
        assert w.index.get_object("b", "doomed") is not None
        w.scrubber.orphan_grace = 0
        report = await w.scrubber.run_once()
        assert [(d["key"], d["version_id"]) for d in report.deletes_finished] == [("doomed", doomed["version_id"])]
        assert w.index.get_object("b", "doomed") is None
        assert w.index.get_object("b", "kept")["version_id"] == newer["version_id"]
        assert not any(os.path.exists(w.path(doomed, i)) for i in range(6))
        assert await w.get(newer) == unique(50_000, "n")
        assert report.summary()["deletes_finished"] == 1
    run(tmp_path, scenario)


def test_an_entry_for_a_version_never_indexed_waits_then_is_dropped(tmp_path):
    """A degraded write is queued before its index commit; if the commit never comes (its
    client was told it failed, or the gateway died), the entry must not wait forever, and
    while it waits the report says why and for how long."""
    async def go(w):
        rec = await w.put("k", unique(SEG, 7))
        never = {**rec, "version_id": new_id(), "key": "never committed"}
        await w.queue.add(never, {1: ("missing", "test")}, "put")
        report = await w.repairer.run_once()
        [waiting] = report.deferred
        assert waiting["key"] == "never committed" and report.remaining == 1
        assert "not indexed yet" in waiting["why"] and "dropped in 600s" in waiting["why"], waiting["why"]
        w.repairer.settle = 0
        report = await w.repairer.run_once()
        assert report.dropped == 1 and report.remaining == 0 and not report.deferred
    run(tmp_path, go)
