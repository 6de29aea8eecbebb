"""A version whose archives are on the disks and whose index commit is still to come is
never taken by the scrubber as an orphan, however small the grace: not in the process
writing it (storage/objects/in_flight.py's `Writes`), and not in another process
(`pocket scrub`, a second gateway) that knows it from the writer's report in the index."""
from __future__ import annotations

import asyncio
import os
import time

from storage.durability.scrub import Scrubber
from storage.objects import in_flight
from storage.objects.commits import install
from storage.s3.digests import BodyDigests

from .test_repair import SEG, read, run, unique

ATTRS = {"bucket": "b", "key": "racing", "content_type": "x/y", "meta": {}, "headers": {}, "owner": "o"}


async def _store(w, data: bytes) -> dict:
    """What a PUT has done when its body is stored: every archive fsync'd in place, no commit yet."""
    async def body():
        half = len(data) // 2
        yield data[:half]
        await asyncio.sleep(0.05)      # a slow client
        yield data[half:]
    return await w.objects.store(body(), len(data), BodyDigests({}, len(data), None), dict(ATTRS))


def test_a_put_between_its_archives_and_its_commit_survives_a_scrub_pass_with_no_grace(tmp_path):
    async def go(w):
        w.scrubber.orphan_grace = 0
        data = unique(3 * SEG + 5, "in-flight")
        record = await _store(w, data)
        stored = {i: read(w.path(record, i)) for i in range(6)}
        scrub = await w.scrubber.run_once()             # the pass lands in the PUT's window
        assert scrub.orphans_removed == [] and scrub.orphans_young == 6
        assert {i: read(w.path(record, i)) for i in range(6)} == stored
        await w.objects.commit(record, lambda ops: install(ops, "b", "racing", record, None))   # the 200
        assert record["version_id"] not in w.objects.writes
        assert await w.get(w.index.get_object("b", "racing")) == data

        abandoned = await _store(w, unique(2 * SEG, "abandoned"))
        w.objects.writes.end(abandoned["version_id"])   # its writer died without a commit
        scrub = await w.scrubber.run_once()
        assert {r["version_id"] for r in scrub.orphans_removed} == {abandoned["version_id"]}
        assert not any(os.path.exists(w.path(abandoned, i)) for i in range(6))
        assert await w.get(w.index.get_object("b", "racing")) == data
    run(tmp_path, go)


def test_another_process_keeps_the_versions_a_gateway_reports_in_flight(tmp_path):
    async def go(w):
        elsewhere = Scrubber(w.cluster, w.index, w.queue, rate=0, orphan_grace=0)   # as `pocket scrub`
        record = await _store(w, unique(2 * SEG + 1, "reported"))
        vid = record["version_id"]
        await in_flight.report(w.writer, "gw-a", w.objects.writes.ids())
        scrub = await elsewhere.run_once()
        assert scrub.orphans_removed == [] and os.path.exists(w.path(record, 0))

        stale = {"at": time.time() - in_flight.STALE_REPORT - 1, "ids": [vid]}
        await w.writer.submit(lambda ops: ops.put_meta(in_flight.REPORTS + "gw-a", stale))   # gw-a was killed long ago
        scrub = await elsewhere.run_once()
        assert {r["version_id"] for r in scrub.orphans_removed} == {vid}
    run(tmp_path, go)


def test_reports_follow_the_writes_and_a_clean_stop_removes_them(tmp_path):
    async def go(w):
        reporter = in_flight.Reporter(w.writer, "gw-a", w.objects.writes)
        reporter.start()
        try:
            w.objects.writes.begin("v1")
            deadline = time.monotonic() + 10
            while in_flight.reported(w.index) != {"v1"}:
                assert time.monotonic() < deadline, w.index.get_meta(in_flight.REPORTS + "gw-a")
                await asyncio.sleep(0.05)
            assert in_flight.reported(w.index, skip="gw-a") == set()
            w.objects.writes.end("v1")
            while w.index.get_meta(in_flight.REPORTS + "gw-a"):
                assert time.monotonic() < deadline, w.index.get_meta(in_flight.REPORTS + "gw-a")
                await asyncio.sleep(0.05)
            w.objects.writes.begin("v2")
            while in_flight.reported(w.index) != {"v2"}:
                assert time.monotonic() < deadline, w.index.get_meta(in_flight.REPORTS + "gw-a")
                await asyncio.sleep(0.05)
        finally:
            await reporter.stop()
        assert in_flight.reported(w.index) == set()     # a clean stop leaves no report behind
    run(tmp_path, go)


def test_each_gateway_reports_in_a_row_of_its_own_and_an_older_shared_row_still_counts(tmp_path):
    """Two gateways' reports never touch one row (on PostgreSQL a shared row made their batches
    of PUTs abort each other); the one shared row an older gateway writes is still honoured."""
    async def go(w):
        await in_flight.report(w.writer, "gw-a", ["va"])
        await in_flight.report(w.writer, "gw-b", ["vb"])
        await w.writer.submit(lambda ops: ops.put_meta(in_flight.META, {"gw-old": {"at": time.time(), "ids": ["vo"]}}))
        with w.index.read() as ops:
            assert set(ops.meta_under(in_flight.REPORTS)) == {"gw-a", "gw-b"}
        assert in_flight.reported(w.index) == {"va", "vb", "vo"}
        assert in_flight.reported(w.index, skip="gw-a") == {"vb", "vo"}
        await in_flight.report(w.writer, "gw-b", None)
        assert in_flight.reported(w.index) == {"va", "vo"}
        assert w.index.get_meta(in_flight.REPORTS + "gw-b") is None
    run(tmp_path, go)
