"""The repairer reads larger windows than a GET (storage/durability/repair.py): rebuilt
fragments stay byte-identical across window boundaries, through a short last segment,
and a surviving fragment found rotten in a later window is read around and queued."""
from __future__ import annotations

import os

import pytest

from storage import layout
from storage.durability import repair

from .test_repair import SEG, read, run, unique


@pytest.mark.parametrize("lost", [2, 5])   # a data fragment (decoded), a parity one (encoded alone)
def test_repair_across_windows_catches_a_rotten_survivor(tmp_path, monkeypatch, lost):
    monkeypatch.setattr(repair, "_WINDOW_BYTES", 3 * SEG)   # windows of segments 0-2, 3-5, 6-7
    size = 7 * SEG + 555                                      # the eighth segment is short

    async def go(w):
        data = unique(size, f"windows-{lost}")
        rec = await w.put("obj", data)
        geo = layout.geometry(rec, rec["k"])
        assert geo.segments == 8 and geo.segment_length(7) == 555
        originals = {i: read(w.path(rec, i)) for i in range(6)}
        os.unlink(w.path(rec, lost))
        rotten = bytearray(originals[0])                      # fragment 0, read by the repair,
        rotten[geo.record_offset(4) + layout.RECORD_OVERHEAD + 9] ^= 0x20   # rots in the second window
        with open(w.path(rec, 0), "wb") as f:
            f.write(rotten)
        await w.queue.add(rec, {lost: ("missing", "test")}, "test")

        report = await w.repairer.run_once()
        assert report.fragments == 1 and not report.failed, report
        assert read(w.path(rec, lost)) == originals[lost]
        await w.queue.drain()
        assert [(e["missing"], e["corrupt"]) for e in w.queue.entries()] == [([], [0])]

        assert (await w.repairer.run_once()).remaining == 0
        assert read(w.path(rec, 0)) == originals[0]
        assert await w.get(rec) == data
    run(tmp_path, go)
