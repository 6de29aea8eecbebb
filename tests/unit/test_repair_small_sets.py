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
