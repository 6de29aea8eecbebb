"""The disk scrubber: reads every byte of one disk at a bounded rate and remembers what is rotten.

Why here, in the process that owns the disk: checking a checksum needs the bytes, and
the bytes are local. Sending a whole data set across the network to the gateway (as
the scrubber once did) costs the network and the gateway's CPU what a node can do
next to its disk; the gateway now only collects what each disk found (durability/scrub.py).

A pass walks the disk's archives in name order and checks each whole (verify.py:
header, every record's xxh3, trailer and manifest); for a packed archive also its pack
record (header and payload checksum), and then every packed record (tombstones, bucket
events). Reads are paced by a `Throttle` at `rate` bytes/s for this disk.

Findings and progress live in `<disk>/scrub-state.json`, written temp + fsync + rename:
a restart neither forgets what was found nor starts a long pass over (it resumes after
the last archive checked). A finding carries the archive's stamp (store.stamp); once the
archive is rewritten (repaired) or deleted the finding is stale and no longer reported.
A finding not confirmed again by a full pass is dropped at the end of that pass.

Passes start `interval` seconds after the last full one finished (`schedule`), and on
request (`request()`, `POST /v1/{disk}/scrub`): a requested pass starts from the first
archive at once, abandoning one in progress, so `pocket scrub` sees a pass that began
after it was asked. One-shot commands use an unscheduled, unsaved scrubber
(`persist=False`): the folder's state file belongs to the process that owns the disk.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from ..throttle import Throttle
from ..verify import ArchiveBytes, verify_archive
from .files import write_durably
from .store import ArchiveMissing

log = logging.getLogger("pocket.scrub.disk")

STATE_FILE = "scrub-state.json"
UNKEYED_LIMIT = 1000      # unkeyed archives named in the state; more are only counted
STATE_FORMAT = 1
SAVE_SECONDS = 5.0


def _empty(disk_id: str) -> dict:
    return {"format": STATE_FORMAT, "disk": disk_id, "passes_started": 0, "pass": None, "last_full_pass": None,
            "totals": {"bytes_checked": 0, "archives_checked": 0, "corrupt_found": 0},
            "corrupt": {}, "corrupt_records": {}, "unkeyed": {}}


class DiskScrubber:
    def __init__(self, store, rate: float = 0, interval: float = 86400.0, start_delay: float = 60.0,
                 persist: bool = True, schedule: bool = True):
        self.store = store
        self.rate = rate
        self.interval, self.start_delay = interval, start_delay
        self.persist, self.schedule = persist, schedule
        self.path = os.path.join(store.root, STATE_FILE)
        self.state = self._load() if persist else _empty(store.disk_id)
        self.throttle = Throttle(rate)
        self._requested: int | None = None
        self._request_rate: float | None = None
        self._wake = asyncio.Event()
        self._born = time.time()
        self._saved_at = 0.0
        self._task: asyncio.Task | None = None
        self._bad_copies: dict[str, tuple] = {}    # archive -> file copy found not whole (stat)
        store.scrubber = self

    # state file ---------------------------------------------------------------------------
    def _load(self) -> dict:
        try:
            with open(self.path) as f:
                state = json.load(f)
            if state.get("format") == STATE_FORMAT and state.get("disk") == self.store.disk_id:
                state.setdefault("unkeyed", {})     # a state saved before keyed checksums
                return state
            log.error("%s is not a scrub state of disk %s (format %r); starting afresh", self.path,
                      self.store.disk_id, state.get("format"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.error("scrub state %s is unreadable (%r); starting afresh: findings will be found again",
                      self.path, e)
        return _empty(self.store.disk_id)

    async def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.persist or (not force and now - self._saved_at < SAVE_SECONDS):
            return
        self._saved_at = now
        data = json.dumps(self.state).encode()
        try:
            await asyncio.get_running_loop().run_in_executor(None, write_durably, self.path, data,
                                                             os.path.join(self.store.root, "tmp"))
        except OSError as e:   # a full or failing disk: findings stay in memory and are reported
            log.error("disk %s: could not save scrub state to %s: %r", self.store.disk_id, self.path, e)

    # what others see ----------------------------------------------------------------------
    def report(self) -> dict:
        """Progress and the findings that still describe the bytes on disk."""
        st = self.state
        corrupt = [{"archive": name, **{k: f[k] for k in ("problem", "first_seen", "last_seen")}}
                   for name, f in sorted(st["corrupt"].items())
                   if list(self.store.stamp(name) or ()) == f["stamp"]]
        records = [{"record": rid, **{k: f[k] for k in ("problem", "first_seen", "last_seen")}}
                   for rid, f in sorted(st["corrupt_records"].items())]
        unkeyed = [name for name, f in sorted(st["unkeyed"].items()) if list(self.store.stamp(name) or ()) == f["stamp"]]
        return {"disk": st["disk"], "rate": self.rate, "running": st["pass"] is not None,
                "requested": self._requested, "passes_started": st["passes_started"], "pass": st["pass"],
                "last_full_pass": st["last_full_pass"], "totals": st["totals"],
                "corrupt": corrupt, "corrupt_records": records, "unkeyed": unkeyed}

    async def settle(self) -> None:
        """Adopt whole file copies that replaced corrupt packed copies since the last check.

        A one-shot `pocket repair` beside the owner writes a rebuilt small archive as a
        file (only the owner writes packs), and the corrupt packed copy, which reads still
        prefer, stays until this scrubber checks it again. Reported meanwhile, its finding
        would have the gateway queue the object it has just repaired once more, and that
        entry would wait for a second, needless repair. So before findings are reported,
        the owner does now what its next check would: drop the packed copy for a file
        that verifies whole. Only findings with a new file copy cost a read."""
        changed = False
        for name, finding in list(self.state["corrupt"].items()):
            if not finding["stamp"] or finding["stamp"][0] != "pack":
                continue
            try:
                st = os.stat(self.store.archive_path(name))
            except FileNotFoundError:
                continue
            copy = (st.st_ino, st.st_mtime_ns, st.st_size)
            if self._bad_copies.get(name) == copy:
                continue
            if await self.store.adopt_file(name, self._whole):
                log.info("disk %s: packed copy of %s was corrupt; the whole file copy a one-shot repair "
                         "wrote replaces it", self.store.disk_id, name)
                del self.state["corrupt"][name]
                changed = True
            else:
                self._bad_copies[name] = copy
        if changed:
            await self._save(force=True)

    def request(self, rate: float | None = None) -> int:
        """A full pass from the first archive, starting now; returns its number."""
        if self._requested is None:
            self._requested = self.state["passes_started"] + 1
        self._request_rate = rate
        self._wake.set()
        return self._requested

    # the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._save(force=True)

    def _due_in(self) -> float | None:
        """Seconds until the next pass should run; None: only when asked."""
        if self._requested is not None or self.state["pass"] is not None:
            return 0.0
        if not self.schedule:
            return None
        last = self.state["last_full_pass"]
        start = last["finished"] + self.interval if last else self._born + self.start_delay
        return max(0.0, start - time.time())

    async def _loop(self) -> None:
        while True:
            wait = self._due_in()
            if wait is None or wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            self._wake.clear()
            if self._due_in() != 0.0:
                continue
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("disk %s: scrub pass failed; trying again in a minute", self.store.disk_id)
                await asyncio.sleep(60)

    async def run_pass(self) -> bool:
        """Run (or resume) one pass to its end; False if a request cut it short."""
        st = self.state
        if self._requested is not None or st["pass"] is None:
            st["passes_started"] = number = self._requested or st["passes_started"] + 1
            self.throttle.rate = self._request_rate if self._request_rate is not None else self.rate
            st["pass"] = {"number": number, "started": time.time(), "cursor": "", "rate": self.throttle.rate,
                          "bytes_checked": 0, "archives_checked": 0, "records_checked": 0, "corrupt_found": 0,
                          "unkeyed": 0}
            self._requested = self._request_rate = None
        else:
            self.throttle.rate = st["pass"].get("rate", self.rate)
            log.info("disk %s: resuming scrub pass %d after %s", self.store.disk_id, st["pass"]["number"],
                     st["pass"]["cursor"] or "the start")
        p = st["pass"]
        await self._save(force=True)
        loop = asyncio.get_running_loop()
        names = await loop.run_in_executor(None, lambda: [item for item in self.store.list_archives()
                                                          if item[0] > p["cursor"]])
        for name, size in names:
            if self._requested is not None:
                return False
            await self._check_archive(p, name, size)
            p["cursor"] = name
            await self._save()
        p["records_checked"] = 0        # records are few and small: all of them, even after a resume
        for rec_id in self.store.packs.record_ids():
            if self._requested is not None:
                return False
            await self._check_record(p, rec_id)
        stale = await loop.run_in_executor(None, self.store.drop_stale_temp)
        if stale:
            log.warning("disk %s: removed %d temp files untouched for an hour (uploads of a process killed "
                        "mid-write, e.g. a gateway worker or a one-shot repair); nothing acknowledged is lost",
                        self.store.disk_id, stale)
        self._finish(p)
        await self._save(force=True)
        return True

    def _finish(self, p: dict) -> None:
        st = self.state
        now = time.time()
        for where in (st["corrupt"], st["corrupt_records"], st["unkeyed"]):
            for name in [n for n, f in where.items() if f["last_seen"] < p["started"]]:
                del where[name]     # gone since (deleted or rewritten), not seen by this pass
        st["last_full_pass"] = {**{k: v for k, v in p.items() if k != "cursor"}, "finished": now,
                                "seconds": round(now - p["started"], 3)}
        st["pass"] = None
        log.info("disk %s: scrub pass %d checked %d archives (%.1f MiB; %d unkeyed, from before keyed checksums) "
                 "and %d records in %.1fs; %d corrupt", st["disk"], p["number"], p["archives_checked"],
                 p["bytes_checked"] / 2**20, p.get("unkeyed", 0), p["records_checked"], now - p["started"],
                 len(st["corrupt"]) + len(st["corrupt_records"]))

    async def _check_archive(self, p: dict, name: str, size: int) -> None:
        stamp = self.store.stamp(name)
        if stamp is None:
            return              # deleted since the listing
        loop = asyncio.get_running_loop()
        problem, verdict = None, None
        try:
            packed = await loop.run_in_executor(None, self.store.packs.read_checked, name)
            if packed is not None:
                data, intact = packed
                if not intact:
                    await self.throttle.take(len(data))
                    problem, read = "pack record fails its checksum", len(data)
                else:
                    verdict = await verify_archive(ArchiveBytes(data), name, len(data), self.throttle)
                    problem, read = verdict.problem, len(data)
            else:
                verdict = await verify_archive(self.store, name, size, self.throttle)
                problem, read = verdict.problem, verdict.bytes_read
        except (FileNotFoundError, ArchiveMissing):
            return
        except OSError as e:    # a bad sector: the archive is as good as rotten
            problem, read = f"unreadable: {e}", 0
        p["archives_checked"] += 1
        if verdict is not None and verdict.legacy and not problem:
            # Format 1. Fine for an object written before keyed checksums (`pocket upgrade`
            # rewrites them); a forgery for any other: only the gateway knows which it is.
            p["unkeyed"] = p.get("unkeyed", 0) + 1
            if name in self.state["unkeyed"] or len(self.state["unkeyed"]) < UNKEYED_LIMIT:
                self.state["unkeyed"][name] = {"stamp": list(stamp), "last_seen": time.time()}
        else:
            self.state["unkeyed"].pop(name, None)
        p["bytes_checked"] += read
        self.state["totals"]["archives_checked"] += 1
        self.state["totals"]["bytes_checked"] += read
        if problem and packed is not None and await self.store.adopt_file(name, self._whole):
            log.info("disk %s: packed copy of %s is corrupt (%s); a whole file copy (written by a one-shot "
                     "repair) replaces it", self.store.disk_id, name, problem)
            problem = None
        if problem:
            await self._found(p, self.state["corrupt"], name, problem, list(stamp))
            log.warning("disk %s: archive %s is corrupt: %s", self.store.disk_id, name, problem)
        elif self.state["corrupt"].pop(name, None) is not None:
            await self._save(force=True)

    async def _whole(self, name: str, data: bytes) -> bool:
        """Are these bytes (a file copy's) the whole, good archive `name`?"""
        return (await verify_archive(ArchiveBytes(data), name, len(data), self.throttle)).problem is None

    async def _check_record(self, p: dict, rec_id: str) -> None:
        try:
            found = await asyncio.get_running_loop().run_in_executor(None, self.store.packs.read_checked, rec_id, True)
        except OSError as e:
            log.warning("disk %s: packed record %s is unreadable: %r", self.store.disk_id, rec_id, e)
            found = (b"", False)
        if found is None:
            return
        data, intact = found
        await self.throttle.take(len(data))
        p["records_checked"] += 1
        if not intact:
            await self._found(p, self.state["corrupt_records"], rec_id, "pack record fails its checksum", None)
            log.warning("disk %s: packed record %s is corrupt", self.store.disk_id, rec_id)
        else:
            self.state["corrupt_records"].pop(rec_id, None)

    async def _found(self, p: dict, where: dict, name: str, problem: str, stamp) -> None:
        now = time.time()
        old = where.get(name)
        if old is not None and old.get("stamp") != stamp:
            old = None          # other bytes under the same name: a new finding
        if old is None:
            p["corrupt_found"] += 1
            self.state["totals"]["corrupt_found"] += 1
        where[name] = {"problem": problem, "first_seen": old["first_seen"] if old else now, "last_seen": now,
                       "stamp": stamp}
        await self._save(force=True)
