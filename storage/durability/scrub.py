"""The scrub pass of the cluster: turns what every disk found into repairs and garbage collection.

Checking bytes is the disks' job: each process that owns disks runs a disk scrubber
per disk (node/disk_scrub.py) that reads every archive at a bounded rate and keeps its
findings. One pass here (`Scrubber.run_once`) reads no archive bytes; it does three things:

1. **Collect.** From every disk that answers: its listing (names and sizes) and its
   scrubber's findings (corrupt archives). With `fresh` (`pocket scrub`) it first asks
   every disk for a new full pass and waits for them all, so the findings describe the
   disks as they are now; the background loop uses what the disks' own passes found.
2. **Account.** Walk the index: every archive set it references (an object version,
   each part of a multipart object, each part of an open upload; sets.py) must have
   fragment `i` on disk `i` of its volume. A fragment neither in the listing nor there
   when asked again (`stat`, which also covers archives written after the listing) is
   missing; one the disk reports is corrupt, and so is one it reports unkeyed (format 1,
   which only the index can tell from a forgery) for an object written keyed. Damage of live objects goes to the repair
   queue, corrupt fragments only if their disk still reports them when asked again after
   the walk (a repair may have finished meanwhile), and none that a repair marked
   rebuilt after its evidence was gathered (index/repairs.py); disks that did not answer are skipped,
   not counted as missing (a down disk is the repairer's business once it is back).
3. **Collect garbage** (garbage.py). An archive whose version the index does not reference (a
   replaced or deleted version whose cleanup failed, an upload that never committed,
   a part of an aborted upload) and is older than `orphan_grace` is deleted. Its
   manifest (read from the disk: a small read, only for these) names its bucket and key,
   and the key is looked up again before deleting, so an upload that committed during the
   pass keeps its archives; one still between its archives and its commit is known by
   its version id (objects/in_flight.py) and is never a candidate, however old. Two safety valves against a lost or half-rebuilt index, which
   would make everything look orphaned: archives whose bucket the index does not know are
   never removed, and a pass that would remove more than a quarter of all versions it saw
   (and more than 20) removes nothing unless forced; both are reported so an operator can
   run `pocket index rebuild`. Before accounting,
   deletes that a crash left half done (the tombstones on disk, the object still in the
   index) are finished (deletes.py).

It runs where the index is: in the gateway process as a background task (`run_forever`),
and as `pocket scrub`. A pass keeps O(archives) of bookkeeping in memory (the listing and
what was found); fine for millions of archives, and the place to change for billions.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Callable

from .. import layout
from ..objects.contracts import VersionRecord
from ..objects.in_flight import Writes
from .deletes import finish_deletes
from .garbage import collect_orphans, fragment_row, remove_strays, stray_copies
from .queue import SCRUB_META, RepairQueue
from .records import rewrite_records
from .sets import alive_sets, find_set

log = logging.getLogger("pocket.scrub")

POLL_SECONDS = 0.25      # how often a fresh pass asks the disks how far they are
_FORGED_UNKEYED = ("an unkeyed (format 1) archive of an object written with keyed checksums: "
                   "forged, or put there by an old tool")


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
    fresh: bool = False       # the disks ran a full pass for this one (else: their last findings)
    disks_never_scrubbed: list[str] = field(default_factory=list)   # no full pass of their own yet
    corrupt: list[dict] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)
    orphans_removed: list[dict] = field(default_factory=list)
    orphans_young: int = 0
    orphans_kept: list[dict] = field(default_factory=list)   # refused by a safety valve
    deletes_finished: list[dict] = field(default_factory=list)  # see deletes.py
    strays_removed: list[dict] = field(default_factory=list)    # copies off their slot, see garbage.py
    records_rewritten: list[dict] = field(default_factory=list)  # corrupt packed records, see records.py
    records_left: list[dict] = field(default_factory=list)       # corrupt ones with no good copy yet
    queued: int = 0

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - self.started

    def summary(self) -> dict:
        """Counters only: what the index keeps as the last scrub's progress."""
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, list)}
        out.update(seconds=round(self.seconds, 3), corrupt=len(self.corrupt), missing=len(self.missing),
                   orphans_removed=len(self.orphans_removed), orphans_kept=len(self.orphans_kept),
                   deletes_finished=len(self.deletes_finished), strays_removed=len(self.strays_removed),
                   records_rewritten=len(self.records_rewritten), records_left=len(self.records_left),
                   disks_skipped=self.disks_skipped)
        return out

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


class Scrubber:
    def __init__(self, cluster, index, queue: RepairQueue, rate: float | None, orphan_grace: float, metrics=None,
                 writes: Writes | None = None, holder: str | None = None):
        self.cluster, self.index, self.queue = cluster, index, queue
        self.rate = rate          # bytes/s per disk for the fresh passes it asks for (None: the disks' own)
        self.orphan_grace = orphan_grace
        # versions being written: this process's own (`writes`), and those other gateways
        # report in the index (objects/in_flight.py; `holder` is this process's report)
        self.writes, self.holder = writes or Writes(), holder
        self.metrics = metrics
        self.report = ScrubReport()      # the pass in progress, or the last one
        self._saved_at = 0.0

    async def run_once(self, on_bytes: Callable[[int], None] | None = None, remove_orphans: bool = True,
                       force_orphans: bool = False, on_listed: Callable[[int], None] | None = None,
                       fresh: bool = True) -> ScrubReport:
        r = self.report = ScrubReport(started=time.time(), running=True, disks=len(self.cluster.disks), fresh=fresh)
        await self._save(force=True)
        listings = await self._list_disks(r)
        r.bytes_total = sum(size for names in listings.values() for _, size in names)
        if on_listed:
            on_listed(r.bytes_total)
        if fresh:
            await self._fresh_passes(r, listings, on_bytes)
        findings_at = time.time()    # the evidence's age: repairs finished since make it stale
        states = await self._findings(r, listings)
        found: dict[str, dict[int, str]] = defaultdict(dict)       # vid -> {index: disk}
        copies: dict[tuple[str, int], list[str]] = defaultdict(list)  # (vid, index) -> every disk holding it
        bad: dict[tuple[str, int, str], str] = {}                  # (vid, index, disk) -> problem
        unkeyed: set[tuple[str, int, str]] = set()                 # format 1 archives the disks saw
        bad_records: list[tuple[str, str]] = []                    # (disk, record id) failing their checksum
        for disk_id, state in states.items():
            for name, _size in listings[disk_id]:
                vid, _, idx = name.partition(".")
                found[vid][int(idx)] = disk_id
                copies[(vid, int(idx))].append(disk_id)
            r.archives += len(listings[disk_id])
            last = state.get("last_full_pass")
            if last is None:
                r.disks_never_scrubbed.append(disk_id)
            elif not fresh:
                r.bytes_verified += last["bytes_checked"]
            for row in state["corrupt"]:
                vid, _, idx = row["archive"].partition(".")
                bad[(vid, int(idx), disk_id)] = row["problem"]
                log.warning("scrub: archive %s on disk %s is corrupt: %s", row["archive"], disk_id, row["problem"])
            for name in state.get("unkeyed", []):
                vid, _, idx = name.partition(".")
                unkeyed.add((vid, int(idx), disk_id))
            for row in state.get("corrupt_records", []):
                log.warning("scrub: packed record %s on disk %s is corrupt (%s); rewriting it from a copy",
                            row["record"], disk_id, row["problem"])
                bad_records.append((disk_id, row["record"]))
        if bad_records:
            r.records_rewritten, r.records_left = await rewrite_records(self.cluster, bad_records)
        scanned = set(states)
        r.deletes_finished = await finish_deletes(self.cluster, self.index, self.queue.write, sorted(scanned))
        strays: list[dict] = []
        live = await self._account(r, found, bad, scanned, copies, strays, unkeyed, findings_at)
        await self.queue.forget_repairs()
        if remove_orphans:
            await collect_orphans(self.cluster, self.index, r, found, live, force_orphans, self.orphan_grace,
                                  self.writes, self.holder, self.metrics)
            await remove_strays(self.cluster, self.index, r, strays)
        r.running, r.finished = False, time.time()
        await self._save(force=True)
        log.info("scrub pass: %d archives on %d disks, %.1f MiB verified%s in %.1fs; %d corrupt, %d missing, "
                 "%d orphans removed", r.archives, len(states), r.bytes_verified / 2**20,
                 " by fresh disk passes" if fresh else " by the disks' last passes", r.seconds, len(r.corrupt),
                 len(r.missing), len(r.orphans_removed))
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

    async def _fresh_passes(self, r: ScrubReport, listings: dict, on_bytes) -> None:
        """Ask every listed disk for a full pass now and wait until all have finished it."""
        async def one(disk_id: str) -> None:
            disk = self.cluster.disks[disk_id]
            seen = 0
            try:
                number = await disk.scrub_request(self.rate)
                while True:
                    state = await disk.scrub_state()
                    last, running = state.get("last_full_pass"), state.get("pass")
                    done = last is not None and last["number"] >= number
                    now = last["bytes_checked"] if done else (
                        running["bytes_checked"] if running and running["number"] == number else 0)
                    if on_bytes and now > seen:
                        on_bytes(now - seen)
                    seen = max(seen, now)
                    if done:
                        r.bytes_verified += last["bytes_checked"]
                        return
                    await asyncio.sleep(POLL_SECONDS)
            except Exception as e:  # the disk stopped answering mid-pass
                log.warning("scrub of disk %s stopped: %r; skipped this pass", disk_id, e)
                r.disks_skipped.append(disk_id)
        await asyncio.gather(*(one(d) for d in listings))

    async def _findings(self, r: ScrubReport, listings: dict) -> dict[str, dict]:
        """Each disk's scrub state, for the disks listed and not skipped since."""
        states = await self._states([d for d in listings if d not in r.disks_skipped], "skipped this pass")
        for disk_id in listings:
            if disk_id not in states and disk_id not in r.disks_skipped:
                r.disks_skipped.append(disk_id)
        return states

    async def _states(self, disk_ids: list[str], otherwise: str) -> dict[str, dict]:
        """The scrub state of each disk that answers; `otherwise` says in the log what a
        silent disk means for the pass."""
        async def one(disk_id: str):
            try:
                return disk_id, await self.cluster.disks[disk_id].scrub_state()
            except Exception as e:
                log.warning("scrub: disk %s did not report its findings (%r); %s", disk_id, e, otherwise)
                return disk_id, None
        pairs = await asyncio.gather(*(one(d) for d in disk_ids))
        return {disk_id: state for disk_id, state in pairs if state is not None}

    async def _account(self, r: ScrubReport, found, bad, scanned: set[str], copies=None,
                       strays: list | None = None, unkeyed: set | None = None,
                       findings_at: float = 0.0) -> set[str]:
        """Queue the damage of every live version; returns the live version ids. Copies of a
        live fragment on disks other than its slot's go to `strays` (see _strays). Each
        fragment's damage is queued with when its evidence was gathered (`findings_at` for
        the findings), so that none is queued that a repair has fixed since (repairs.add)."""
        live: set[str] = set()
        held: list[tuple[VersionRecord, dict, list[str], dict]] = []   # corrupt damage: asked again below
        n = 0
        async for record in alive_sets(self.index):
            n += 1
            if n % 1000 == 0:
                await asyncio.sleep(0)
            vid = record["version_id"]
            live.add(vid)
            r.versions += 1
            volume = self.cluster.volumes.get(record["volume"])
            disks = volume["disks"] if volume else record.get("disks", [])
            damage: dict[int, tuple[str, str]] = {}
            seen: dict[int, float] = {}
            for i, disk_id in enumerate(disks):
                if disk_id not in scanned:
                    continue
                problem = bad.get((vid, i, disk_id))
                if not problem and unkeyed and (vid, i, disk_id) in unkeyed and layout.accepted(record) == layout.STRICT:
                    problem = _FORGED_UNKEYED
                if problem:
                    damage[i], seen[i] = ("corrupt", problem), findings_at
                elif found.get(vid, {}).get(i) != disk_id:
                    asked = time.time()
                    if not await self._present(disk_id, vid, i):
                        damage[i], seen[i] = ("missing", "missing"), asked
            if copies is not None and strays is not None:
                strays += stray_copies(record, disks, damage, copies, scanned, self.orphan_grace)
            if damage and await self._still_current(record):    # not replaced or deleted meanwhile
                if any(kind == "corrupt" for kind, _ in damage.values()):
                    held.append((record, damage, disks, seen))
                else:
                    await self._queue(r, record, damage, disks, seen)
        for record, damage, disks, seen in await self._still_corrupt(held):
            await self._queue(r, record, damage, disks, seen)
        if self.metrics:
            self.metrics.scrub_corrupt.inc(len(r.corrupt))
            self.metrics.scrub_missing.inc(len(r.missing))
        return live

    async def _queue(self, r: ScrubReport, record: VersionRecord, damage: dict, disks: list[str],
                     seen: dict[int, float]) -> None:
        entry = await self.queue.add(record, damage, "scrub", seen)
        queued = set(entry["missing"]) | set(entry["corrupt"]) if entry else set()
        for i, (kind, problem) in sorted(damage.items()):
            if i in queued:
                (r.corrupt if kind == "corrupt" else r.missing).append(fragment_row(record, i, disks[i], problem))
            else:
                log.info("scrub: %s of %s was repaired after its %s finding was made; not queued again",
                         layout.archive_name(record["version_id"], i), record["key"], kind)
        r.queued += bool(queued & set(damage))

    async def _still_corrupt(self, held: list[tuple]) -> list[tuple]:
        """`held` without the corrupt fragments their disks no longer report.

        The findings were fetched before the index walk; a repair that finished since (the
        gateway's repairer, or a one-shot `pocket repair` beside it) rewrote the archive, and
        queueing the old finding would have it rebuilt a second time, needlessly (a disk
        reports a finding only while the archive is the one it was about). Asking the disks
        again, once per pass and only those with corrupt findings, narrows that window from
        the whole walk to one round trip, and the repairs' marks (repairs.add) close it: the
        damage is queued with the time of this second look. A disk that does not answer
        keeps its findings."""
        asked = sorted({disks[i] for _, damage, disks, _ in held for i, (kind, _) in damage.items() if kind == "corrupt"})
        asked_at = time.time()
        states = await self._states(asked, "its findings fetched earlier in this pass are queued")
        reported = {(d, row["archive"]) for d, s in states.items() for row in s["corrupt"]}
        reported |= {(d, name) for d, s in states.items() for name in s.get("unkeyed", [])}
        out = []
        for record, damage, disks, seen in held:
            damage = {i: (kind, problem) for i, (kind, problem) in damage.items()
                      if kind != "corrupt" or disks[i] not in states
                      or (disks[i], layout.archive_name(record["version_id"], i)) in reported}
            seen = {i: asked_at if damage[i][0] == "corrupt" and disks[i] in states else t
                    for i, t in seen.items() if i in damage}
            if damage:
                out.append((record, damage, disks, seen))
        return out

    async def _still_current(self, record: VersionRecord) -> bool:
        """Look again: the version may have been replaced or deleted since the index walk."""
        return await self.index.call(find_set, self.index, record["bucket"], record["key"],
                                     record["version_id"]) is not None

    async def _present(self, disk_id: str, vid: str, i: int) -> bool:
        try:
            return await self.cluster.disks[disk_id].stat(layout.archive_name(vid, i)) is not None
        except Exception:
            return True     # cannot tell: not reported as missing

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
            last = await self.index.call(self.queue.progress, SCRUB_META) or {}
            if last.get("finished"):
                wait = last["finished"] + interval - time.time()
            else:
                wait = start_delay
            await asyncio.sleep(max(0.0, wait))
            try:
                await self.run_once(fresh=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scrub pass failed; next try in %.0fs", interval)
                await asyncio.sleep(interval)
