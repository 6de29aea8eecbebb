"""Small sets (archives read whole) are rebuilt without the streaming reader and writer
(storage/durability/small_sets.py): byte-identical archives for every size class that
takes that path, many sets at once, and the streaming path still used when fewer than k
source archives are whole."""
from __future__ import annotations

import os

from storage import layout
from storage.durability import repair

from .test_repair import SEG, read, run, unique


def _no_streaming(monkeypatch) -> None:
    async def refused(*_args):
        raise AssertionError("a small set went through the streaming path")
    monkeypatch.setattr(repair.Repairer, "_rebuild", refused)


def test_many_small_sets_of_every_size_come_back_byte_identical(tmp_path, monkeypatch):
    """Replicated objects (one record, or none), erasure-coded ones of one segment and of
    several with a short last one, each with two fragments lost (m of them for 4+2),
    repaired in one run with the streaming path switched off."""
    sizes = [0, 1, 4095, 4097, SEG - 1, SEG, SEG + 1, 3 * SEG + 777, 9 * SEG + 5]
    _no_streaming(monkeypatch)

    async def go(w):
        recs = [await w.put(f"s{n}", unique(size, f"small-{n}-{size}")) for n, size in enumerate(sizes)]
        originals = {}
        for n, rec in enumerate(recs):
            width = rec["k"] + rec["m"]
            originals.update({(n, i): read(w.path(rec, i)) for i in range(width)})
            lost = {(n % width), (n + 2) % width}
            for i in lost:
                os.unlink(w.path(rec, i))
            await w.queue.add(rec, {i: ("missing", "test") for i in lost}, "test")
        report = await w.repairer.run_once()
        assert not report.failed and report.remaining == 0, report
        assert report.fragments == 2 * len(sizes)
        assert report.bytes_written == sum(len(originals[n, i]) for n, i in originals
                                           if i in {n % (recs[n]["k"] + recs[n]["m"]),
                                                    (n + 2) % (recs[n]["k"] + recs[n]["m"])})
        for (n, i), raw in originals.items():
            assert read(w.path(recs[n], i)) == raw, (sizes[n], i)
        for n, rec in enumerate(recs):
            if rec["size"]:
                assert await w.get(rec) == unique(sizes[n], f"small-{n}-{sizes[n]}")
    run(tmp_path, go)


def test_a_set_with_too_few_whole_sources_is_streamed_segment_by_segment(tmp_path):
    """Fragments 0 and 1 rotten in different segments leave three whole archives of a 4+2
    set: not enough to rebuild whole, but every segment still has four good blocks, which
    the streaming reader mixes. The lost fragment comes back byte-identical and both rotten
    ones are queued."""
    async def go(w):
        rec = await w.put("mixed", unique(3 * SEG + 300, "mixed"))
        geo = layout.geometry(rec, rec["k"])
        originals = {i: read(w.path(rec, i)) for i in range(6)}
        os.unlink(w.path(rec, 5))
        for i, segment in ((0, 0), (1, 2)):
            raw = bytearray(originals[i])
            raw[geo.record_offset(segment) + layout.RECORD_OVERHEAD + 17] ^= 0x04
            with open(w.path(rec, i), "wb") as f:
                f.write(raw)
        await w.queue.add(rec, {5: ("missing", "test")}, "test")
        report = await w.repairer.run_once()
        assert report.fragments == 1 and not report.failed, report
        assert read(w.path(rec, 5)) == originals[5]
        await w.queue.drain()
        assert [(e["missing"], e["corrupt"]) for e in w.queue.entries()] == [([], [0, 1])]
        assert (await w.repairer.run_once()).remaining == 0
        assert all(read(w.path(rec, i)) == originals[i] for i in range(6))
    run(tmp_path, go)


def test_a_wiped_disks_small_sets_are_rebuilt_in_batches_around_an_unreadable_one(tmp_path, monkeypatch):
    """Every archive of disk d0 deleted (a wiped disk) under 60 small objects, replicated and
    erasure-coded, and one of them unreadable (all its other archives rotten): a scrub
    queues them, one repair finds them in the index a batch at a time (not one call per
    set) and rebuilds the rest byte for byte; the unreadable one fails and stays queued."""
    sizes = [1 + (n * 7919) % (3 * SEG) for n in range(60)]
    lookups = []
    real = repair.find_sets

    def counted(index, entries):
        lookups.append(len(entries))
        return real(index, entries)
    monkeypatch.setattr(repair, "find_sets", counted)

    async def go(w):
        recs = [await w.put(f"w{n}", unique(size, f"wiped-{n}")) for n, size in enumerate(sizes)]
        on_d0 = {n: [i for i in range(rec["k"] + rec["m"]) if w.cluster.volumes[rec["volume"]]["disks"][i] == "d0"]
                 for n, rec in enumerate(recs)}
        held = {(n, i): read(w.path(recs[n], i)) for n, idx in on_d0.items() for i in idx}
        assert len(held) >= 30, "the load puts archives on the disk to wipe"
        doomed = next(n for n, idx in on_d0.items() if idx and recs[n]["k"] == 1)
        for i in range(recs[doomed]["k"] + recs[doomed]["m"]):
            if i not in on_d0[doomed]:
                raw = bytearray(read(w.path(recs[doomed], i)))
                raw[layout.HEADER_SIZE + layout.RECORD_OVERHEAD + 1] ^= 0x10
                with open(w.path(recs[doomed], i), "wb") as f:
                    f.write(raw)
        for n, i in held:
            os.unlink(w.path(recs[n], i))
        scrub = await w.scrubber.run_once()
        assert {(m["version_id"], m["index"]) for m in scrub.missing} == \
            {(recs[n]["version_id"], i) for n, i in held}

        report = await w.repairer.run_once()
        assert [f["version_id"] for f in report.failed] == [recs[doomed]["version_id"]], report.failed
        assert report.fragments == len(held) - len(on_d0[doomed])
        assert lookups == [len(report.repaired) + 1], "one index call found the batch's sets"
        for (n, i), raw in held.items():
            if n != doomed:
                assert read(w.path(recs[n], i)) == raw, (n, i)
        for n, rec in enumerate(recs):
            if n != doomed:
                assert await w.get(rec) == unique(sizes[n], f"wiped-{n}")
        await w.queue.drain()
        assert [e["version_id"] for e in w.queue.entries()] == [recs[doomed]["version_id"]]
        assert not os.path.exists(w.path(recs[doomed], on_d0[doomed][0])), "nothing written from rotten sources"
    run(tmp_path, go)
