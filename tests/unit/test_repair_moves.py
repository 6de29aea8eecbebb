"""Slot moves and the scrub's evidence: a fragment a move rewrote is marked like a repair's
(storage/disks/moves.py, index/repairs.py), on the in-process cluster of test_repair.py
with a seventh disk to move a slot to."""
from __future__ import annotations

from storage.disks.moves import SlotMover

from .test_repair import SEG, _rotten_and_found, read, run, unique


def test_a_move_rewriting_a_rotten_fragment_during_a_scrub_pass_is_not_queued_again(tmp_path):
    """A pass looked at a rotten fragment (its disk still reported it when asked again), then
    a drain moved the slot: the copy failed its check, the fragment was rebuilt onto the new
    disk and the old one deleted. The pass must not queue a rebuild from its stale look, nor
    report the fragment corrupt; damage found after the move is queued as ever."""
    async def go(w):
        rec, original, raw = await _rotten_and_found(w, "moved", 6, 1, 57)
        assert [e["corrupt"] for e in w.queue.entries()] == [[1]]
        old = w.cluster.volumes[rec["volume"]]["disks"][1]
        new = next(d for d in w.disks if d not in w.cluster.volumes[rec["volume"]]["disks"])
        move = {"volume": rec["volume"], "slot": 1, "from": old, "to": new, "mode": "copy", "phase": "copying"}
        mover = SlotMover(w.cluster, w.index, w.queue, w.repairer, settle=0)
        looked = w.scrubber._still_corrupt

        async def then_moved(held):
            kept = await looked(held)
            assert [i for _, damage, _, _ in kept for i in damage] == [1]   # still reported when asked
            report = await mover.run([move])
            assert report.rebuilt == 1 and not report.failed
            return kept
        w.scrubber._still_corrupt = then_moved
        second = await w.scrubber.run_once()
        assert w.cluster.volumes[rec["volume"]]["disks"][1] == new
        assert read(w.path(rec, 1)) == original
        assert second.corrupt == [] and w.queue.length() == 0, w.queue.entries()
        assert await w.get(rec) == unique(2 * SEG + 6, 6)   # the body _rotten_and_found stored

        w.scrubber._still_corrupt = looked
        with open(w.path(rec, 1), "wb") as f:     # rot again, on the new disk, after the move
            f.write(raw)
        assert [(c["index"], c["disk"]) for c in (await w.scrubber.run_once()).corrupt] == [(1, new)]
        assert [e["corrupt"] for e in w.queue.entries()] == [[1]]
    run(tmp_path, go, disks=7)
