"""Versions being written and not yet committed, so the scrubber never takes their archives.

A write's archives are on the disks (fsync'd, renamed into place) before the index commit
that makes them an object; between the two they look exactly like an orphan. The
scrubber's `orphan_grace` alone did not protect them: a write can outlast any grace (a
slow client, a migrating bucket's source PUT between store and commit), and with a small
grace a scrub pass took the archives of a PUT that then answered 200.

So every write registers its version id from before its first archive until its commit
or discard (`Writes`). The scrubber in the same process skips those ids exactly. Every
gateway also reports its ids in the index within `REPORT_SECONDS` of a change, and a
scrubber in another process (a second gateway, `pocket scrub`) keeps the ids reported.
A write begun since a gateway's last report is not listed yet, but it is younger than
`config_rules.MIN_ORPHAN_GRACE`, the least grace the config accepts: no write is both unreported and
old enough to be judged. A report older than `STALE_REPORT` is from a gateway that was
killed before it could remove it; its writes can no longer commit.

Each gateway's report is a meta row of its own (`REPORTS` + its holder id): with one row
shared by all, every report of one gateway was a read-modify-write of the row the others
rewrite each second under load, so on PostgreSQL their batches of PUTs aborted each other
(serialization failures, issue 11). The shared row `META` of older gateways is still read.
"""
from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("pocket.writes")

META = "writes_in_flight"            # one row for all gateways: written by older versions only
REPORTS = "writes_in_flight/"        # + holder: one gateway's report
REPORT_SECONDS = 1.0        # a change of a gateway's writes reaches the index this soon
REFRESH_SECONDS = 60.0      # an unchanged report with writes in it is refreshed this often
STALE_REPORT = 600.0


class Writes:
    """The version ids this process is writing (stored, not yet committed or discarded)."""

    def __init__(self):
        self._ids: dict[str, float] = {}

    def begin(self, version_id: str) -> None:
        self._ids[version_id] = time.time()

    def end(self, version_id: str) -> None:
        self._ids.pop(version_id, None)

    def __contains__(self, version_id: str) -> bool:
        return version_id in self._ids

    def ids(self) -> list[str]:
        return sorted(self._ids)


def reported(index, skip: str | None = None, now: float | None = None) -> set[str]:
    """The version ids other live gateways report in flight (`skip`: this process's own)."""
    now = time.time() if now is None else now
    with index.read() as ops:
        reports = {**(ops.get_meta(META) or {}), **ops.meta_under(REPORTS)}
    return {vid for holder, report in reports.items()
            if holder != skip and now - report["at"] <= STALE_REPORT for vid in report["ids"]}


async def report(writer, holder: str, ids: list[str] | None) -> None:
    """Put this gateway's report in the index (None or empty: remove it)."""
    value = {"at": time.time(), "ids": ids} if ids else None

    def update(ops):
        if value is None:
            ops.delete_meta(REPORTS + holder)
        else:
            ops.put_meta(REPORTS + holder, value)   # a blind write: no read another gateway's write conflicts with
    await writer.submit(update)


class Reporter:
    """A process's writes in flight, kept in the index while it runs (`start`) and removed
    at a clean stop (`stop`): the gateway, and `pocket migrate copy`, which stores versions too."""

    def __init__(self, writer, holder: str, writes: Writes):
        self.writer, self.holder, self.writes = writer, holder, writes
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        self._task = None
        try:
            await report(self.writer, self.holder, None)
        except Exception as e:
            log.warning("could not remove the report of writes in flight of %s (%r); it expires in %.0f s",
                        self.holder, e, STALE_REPORT)

    async def _run(self) -> None:
        """Report each change of the writes in flight, at most every REPORT_SECONDS. The
        first report is made even with nothing in flight: a process restarted under the same
        holder (a gateway or worker after a crash) replaces its dead predecessor's report,
        whose uploads died with it, so scrub does not keep their archives for STALE_REPORT."""
        last: list[str] | None = None
        at = 0.0
        while True:
            ids = self.writes.ids()
            if ids != last or (ids and time.monotonic() - at >= REFRESH_SECONDS):
                try:
                    await report(self.writer, self.holder, ids)
                    last, at = ids, time.monotonic()
                except Exception as e:   # scrubbers elsewhere keep judging by the grace alone meanwhile
                    log.warning("could not report the %d writes in flight to the index (%r); retrying",
                                len(ids), e)
            await asyncio.sleep(REPORT_SECONDS)
