"""The scrubber: finds rotten, missing and orphaned fragment archives.

One pass (`Scrubber.run_once`) does three things:

1. **Verify.** List every disk that answers, then read every archive whole at a bounded
   rate (bytes/s, shared by all disks) and check header, every record checksum and the
   trailer (verify.py). An archive that fails belongs to a corrupt fragment.
2. **Account.** Walk the index: every archive set it references (an object version,
   each part of a multipart object, each part of an open upload; sets.py) must have
   fragment `i` on disk `i` of its volume. A fragment neither seen in the listing nor there when asked again
   (`stat`, which also covers archives written after the listing) is missing. Damage of
   live objects goes to the repair queue; disks that did not answer are skipped, not
   counted as missing (a down disk is the repairer's business once it is back).
3. **Collect garbage.** An archive whose version the index does not reference (a
   replaced or deleted version whose cleanup failed, an upload that never committed,
   a part of an aborted upload) and is older than `orphan_grace` is deleted. Before deleting, the key is
   looked up again, so an upload that committed during the pass keeps its archives.
   Two safety valves against a lost or half-rebuilt index, which would make everything
   look orphaned: archives whose bucket the index does not know are never removed, and
   a pass that would remove more than a quarter of all versions it saw (and more than
   20) removes nothing unless forced; both are reported so an operator can run
   `pocket index rebuild`. Before accounting, deletes that a crash left half done (the
   tombstones on disk, the object still in the index) are finished (deletes.py).

It runs in the gateway process, as a background task (`run_forever`): the gateway
already sees every disk through the cluster (local folders and node processes alike)
and owns the index, so this is the simplest correct place for it; a node-local
scrubber would need its own view of the index to tell orphans from live data. The same
class runs one pass from `pocket scrub`.

A pass keeps O(archives) of bookkeeping in memory (the listing and what was found);
fine for millions of archives, and the place to change when a cluster holds billions.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Callable

from .. import layout
from ..objects.ids import id_time
from ..node.packs import PacksOwnedElsewhere
from .deletes import finish_deletes
from .queue import SCRUB_META, RepairQueue
from .sets import find_set, live_sets
from .verify import Pacer, verify_archive

log = logging.getLogger("pocket.scrub")

ORPHAN_VALVE_FRACTION = 0.25
ORPHAN_VALVE_MIN = 20


@dataclass
class ScrubReport:
    started: float = 0.0
    finished: float = 0.0
    running: bool = False
    disks: int = 0
    disks_skipped: list[str] = field(default_factory=list)
    archives: int = 0
    bytes_total: int = 0
    bytes_verified: int = 0
    versions: int = 0         # archive sets the index references, all checked
    corrupt: list[dict] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)
    orphans_removed: list[dict] = field(default_factory=list)
    orphans_young: int = 0
    orphans_kept: list[dict] = field(default_factory=list)   # refused by a safety valve
    deletes_finished: list[dict] = field(default_factory=list)  # see deletes.py
    queued: int = 0

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - self.started

    def summary(self) -> dict:
        """Counters only: what the index keeps as the last scrub's progress."""
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, list)}
        out.update(seconds=round(self.seconds, 3), corrupt=len(self.corrupt), missing=len(self.missing),
                   orphans_removed=len(self.orphans_removed), orphans_kept=len(self.orphans_kept),
                   deletes_finished=len(self.deletes_finished),
                   disks_skipped=self.disks_skipped)
        return out

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


class Scrubber:
    def __init__(self, cluster, index, queue: RepairQueue, rate: float, orphan_grace: float, metrics=None):
        self.cluster, self.index, self.queue = cluster, index, queue
        self.rate = rate
        self.orphan_grace = orphan_grace
        self.metrics = metrics
        self.report = ScrubReport()      # the pass in progress, or the last one
        self._saved_at = 0.0

    async def run_once(self, on_bytes: Callable[[int], None] | None = None, remove_orphans: bool = True,
                       force_orphans: bool = False, on_listed: Callable[[int], None] | None = None) -> ScrubReport:
        r = self.report = ScrubReport(started=time.time(), running=True, disks=len(self.cluster.disks))
        await self._save(force=True)
        listings = await self._list_disks(r)
        r.bytes_total = sum(size for names in listings.values() for _, size in names)
        if on_listed:
            on_listed(r.bytes_total)
        found: dict[str, dict[int, str]] = defaultdict(dict)       # vid -> {index: disk}
        bad: dict[tuple[str, int, str], str] = {}                  # (vid, index, disk) -> problem
        owners: dict[str, tuple[str, str]] = {}                    # vid -> (bucket, key)
        pacer = Pacer(self.rate)

        async def walk(disk_id: str, names: list[tuple[str, int]]) -> None:
            disk = self.cluster.disks[disk_id]
            for name, size in names:
                vid, _, idx = name.partition(".")
                try:
                    verdict = await verify_archive(disk, name, size, pacer)
                except FileNotFoundError:
                    continue            # deleted since the listing: a replaced or deleted version
                except Exception as e:  # the disk stopped answering mid-pass
                    log.warning("scrub of disk %s stopped at %s: %r", disk_id, name, e)
                    r.disks_skipped.append(disk_id)
                    return
                r.archives += 1
                r.bytes_verified += verdict.bytes_read
                if self.metrics:
                    self.metrics.scrub_bytes.inc(verdict.bytes_read)
                if on_bytes:
                    on_bytes(size)
                found[vid][int(idx)] = disk_id
                if verdict.problem:
                    bad[(vid, int(idx), disk_id)] = verdict.problem
                    log.warning("scrub: archive %s on disk %s is corrupt: %s", name, disk_id, verdict.problem)
                if verdict.manifest and "bucket" in verdict.manifest:
                    owners[vid] = (verdict.manifest["bucket"], verdict.manifest["key"])
                await self._save()
        await asyncio.gather(*(walk(d, names) for d, names in listings.items()))

        scanned = set(listings) - set(r.disks_skipped)
        r.deletes_finished = await finish_deletes(self.cluster, self.index, self.queue.write, sorted(scanned))
        live = await self._account(r, found, bad, scanned)
        if remove_orphans:
            await self._collect(r, found, owners, live, force_orphans)
        r.running, r.finished = False, time.time()
        await self._save(force=True)
        log.info("scrub pass: %d archives, %.1f MiB verified in %.1fs; %d corrupt, %d missing, %d orphans removed",
                 r.archives, r.bytes_verified / 2**20, r.seconds, len(r.corrupt), len(r.missing),
                 len(r.orphans_removed))
        return r

    async def _list_disks(self, r: ScrubReport) -> dict[str, list[tuple[str, int]]]:
        async def one(disk_id, disk):
            if not self.cluster.is_up(disk_id):
                r.disks_skipped.append(disk_id)
                return disk_id, None
            try:
                return disk_id, [item async for item in disk.iter_archives()]
            except Exception as e:
                log.warning("scrub: disk %s could not be listed (%r); skipped this pass", disk_id, e)
                r.disks_skipped.append(disk_id)
                return disk_id, None
        pairs = await asyncio.gather(*(one(i, d) for i, d in self.cluster.disks.items()))
        return {disk_id: names for disk_id, names in pairs if names is not None}

    async def _account(self, r: ScrubReport, found, bad, scanned: set[str]) -> set[str]:
        """Queue the damage of every live version; returns the live version ids."""
        live: set[str] = set()
        for n, record in enumerate(live_sets(self.index)):
            if n % 1000 == 999:
                await asyncio.sleep(0)
            vid = record["version_id"]
            live.add(vid)
            r.versions += 1
            volume = self.cluster.volumes.get(record["volume"])
            disks = volume["disks"] if volume else record.get("disks", [])
            damage: dict[int, tuple[str, str]] = {}
            for i, disk_id in enumerate(disks):
                if disk_id not in scanned:
                    continue
                problem = bad.get((vid, i, disk_id))
                if problem:
                    damage[i] = ("corrupt", problem)
                elif found.get(vid, {}).get(i) != disk_id and not await self._present(disk_id, vid, i):
                    damage[i] = ("missing", "missing")
            if damage and self._still_current(record):    # not replaced or deleted meanwhile
                for i, (kind, problem) in sorted(damage.items()):
                    (r.corrupt if kind == "corrupt" else r.missing).append(self._row(record, i, disks[i], problem))
                await self.queue.add(record, damage, "scrub")
                r.queued += 1
        if self.metrics:
            self.metrics.scrub_corrupt.inc(len(r.corrupt))
            self.metrics.scrub_missing.inc(len(r.missing))
        return live

    def _still_current(self, record: dict) -> bool:
        return find_set(self.index, record["bucket"], record["key"], record["version_id"]) is not None

    async def _present(self, disk_id: str, vid: str, i: int) -> bool:
        try:
            return await self.cluster.disks[disk_id].stat(layout.archive_name(vid, i)) is not None
        except Exception:
            return True     # cannot tell: not reported as missing

    @staticmethod
    def _row(record: dict, i: int, disk_id: str, problem: str) -> dict:
        return {"bucket": record["bucket"], "key": record["key"], "version_id": record["version_id"],
                "index": i, "disk": disk_id, "archive": layout.archive_name(record["version_id"], i),
                "problem": problem}

    async def _collect(self, r: ScrubReport, found, owners, live: set[str], force: bool) -> None:
        """Remove archives of versions nobody references, old enough not to be an upload in flight."""
        now = time.time()
        candidates = []
        for vid, where in found.items():
            if vid in live:
                continue
            if now - id_time(vid) < self.orphan_grace:
                r.orphans_young += len(where)
                continue
            owner = owners.get(vid)
            rows = [{"disk": d, "archive": layout.archive_name(vid, i), "version_id": vid,
                     "bucket": owner[0] if owner else None, "key": owner[1] if owner else None}
                    for i, d in sorted(where.items())]
            if owner and self.index.get_bucket(owner[0]) is None:
                r.orphans_kept += [{**row, "why": "bucket not in the index"} for row in rows]
                continue
            if owner and self._referenced(vid, owner):
                continue
            candidates.append(rows)
        versions = len(found)
        if not force and len(candidates) > ORPHAN_VALVE_MIN and len(candidates) > versions * ORPHAN_VALVE_FRACTION:
            log.error("scrub: %d of %d versions on disk are not in the index; not removing any. If the index "
                      "was lost or restored from a backup, run `pocket index rebuild`; otherwise "
                      "`pocket scrub --force-orphans` removes them", len(candidates), versions)
            r.orphans_kept += [{**row, "why": "safety valve"} for rows in candidates for row in rows]
            return
        for rows in candidates:
            for row in rows:
                try:
                    if await self.cluster.disks[row["disk"]].delete_archive(row["archive"]):
                        r.orphans_removed.append(row)
                        if self.metrics:
                            self.metrics.orphans_removed.inc()
                except PacksOwnedElsewhere:
                    r.orphans_kept.append({**row, "why": "packed on a disk a running process owns; "
                                                         "its own scrub removes it"})
                except Exception as e:
                    log.warning("scrub: could not remove orphan %s on %s: %r", row["archive"], row["disk"], e)
        if r.orphans_removed:
            log.info("scrub: removed %d orphaned archives", len(r.orphans_removed))

    def _referenced(self, vid: str, owner: tuple[str, str]) -> bool:
        """Look again: an upload may have committed since the index walk."""
        return find_set(self.index, owner[0], owner[1], vid) is not None

    async def _save(self, force: bool = False) -> None:
        """Keep the pass's progress in the index (at most every few seconds) for `pocket status`."""
        now = time.monotonic()
        if force or now - self._saved_at > 5:
            self._saved_at = now
            try:
                await self.queue.save_progress(SCRUB_META, self.report.summary())
            except Exception as e:  # progress is nice to have; never stop a pass for it
                log.warning("scrub: could not save progress: %r", e)

    async def run_forever(self, interval: float, start_delay: float) -> None:
        """Background loop: a pass every `interval` seconds after the last one finished.

        The last finish time is kept in the index, so restarting the gateway neither
        skips nor repeats passes; a cluster never scrubbed starts after `start_delay`."""
        while True:
            last = self.queue.progress(SCRUB_META) or {}
            if last.get("finished"):
                wait = last["finished"] + interval - time.time()
            else:
                wait = start_delay
            await asyncio.sleep(max(0.0, wait))
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scrub pass failed; next try in %.0fs", interval)
                await asyncio.sleep(interval)
