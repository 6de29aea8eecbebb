"""What the disks hold, for `pocket index rebuild`: every fragment archive and record.

The scan is the one part of a rebuild that talks to disks (rebuild.py replays what it
found); its report counts what was found and names what could not be used, so an
operator sees which disks to bring back before trusting the rebuilt index.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from .. import layout

log = logging.getLogger("pocket.rebuild")


@dataclass
class RebuildReport:
    disks_scanned: int = 0
    disks_unreachable: list[str] = field(default_factory=list)
    archives: int = 0
    buckets: int = 0
    objects: int = 0
    tombstoned: int = 0
    superseded: int = 0
    versions: int = 0  # versions and delete markers of versioned buckets
    unreadable: int = 0   # versions and parts that may have been acknowledged and cannot be read
    lost: list[dict] = field(default_factory=list)          # those, named
    interrupted: list[dict] = field(default_factory=list)   # never acknowledged: a warning (rebuild.py)
    uploads: int = 0
    parts: int = 0
    records_skipped: int = 0   # records on the disks that could not be applied (see skipped)
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def short(self, m: dict, vid: str, why: str, never_acknowledged: bool) -> None:
        """A version or part with too few fragments: a warning if it was never acknowledged."""
        row = {"bucket": m["bucket"], "key": m["key"], "version_id": vid, "why": why}
        if never_acknowledged:
            self.interrupted.append(row)
            log.warning("%s/%s version %s: %s, and no disk that could have held more is missing: an upload "
                        "interrupted before it was acknowledged, not a loss; the scrubber removes what is "
                        "left of it", m["bucket"], m["key"], vid, why)
            return
        self.unreadable += 1
        self.lost.append(row)
        log.error("%s/%s version %s: %s; it cannot be recovered, and it may have been acknowledged. Bring back "
                  "the disks that did not answer or were failed (see `pocket disk list`) and rebuild again",
                  m["bucket"], m["key"], vid, why)

    def skip(self, rec_id: str, kind, reason: str) -> None:
        """One record left out: counted, kept for the report, logged with what to do."""
        self.records_skipped += 1
        self.skipped.append({"id": rec_id, "kind": kind, "reason": reason})
        log.error("record %s (%s) cannot be applied and was skipped: %s; the rest of the index is rebuilt "
                  "without it (check the setting it carried once the gateway is up)", rec_id, kind, reason)


async def scan(disks: dict) -> tuple[dict, dict, RebuildReport]:
    """Every version's fragments (version id -> {index: disk id}) and every record."""
    report = RebuildReport()
    versions: dict[str, dict[int, str]] = defaultdict(dict)
    records: dict[str, dict] = {}

    async def one(disk_id, disk):
        try:
            async for name, _size in disk.iter_archives():
                vid, _, idx = name.partition(".")
                versions[vid][int(idx)] = disk_id
                report.archives += 1
            async for rec_id, data in disk.iter_records():
                try:
                    records[rec_id] = json.loads(data)
                except ValueError:
                    report.skip(rec_id, None, f"not valid JSON on disk {disk_id}")
            report.disks_scanned += 1
        except Exception as e:
            log.error("disk %s could not be listed (%r); objects with fragments there may be missed", disk_id, e)
            report.disks_unreachable.append(disk_id)
    await asyncio.gather(*(one(i, d) for i, d in disks.items()))
    return versions, records, report


async def read_manifest(disks: dict, vid: str, fragments: dict[int, str]) -> dict | None:
    for idx, disk_id in sorted(fragments.items()):
        try:
            return await disks[disk_id].read_manifest(layout.archive_name(vid, idx))
        except Exception as e:
            log.warning("manifest of %s.%d on %s unreadable (%r); trying another fragment", vid, idx, disk_id, e)
    return None
