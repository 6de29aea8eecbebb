"""The repairer: rebuilds the fragments the repair queue lists, least redundancy first.

For one queued object version it reads `k` good fragments segment by segment with the
GET path's `ArchiveReader` (same checksum checks, the fragments being rebuilt read only
as a last resort), computes just the lost blocks of each segment (Codec.rebuild: a lost
data block is decoded, a lost parity block encoded alone; no segment is joined and cut
again) and streams them through the PUT path's `ArchiveWriter`, restricted to
the fragment indexes being rebuilt. So a rebuilt archive goes to the same name on the
same disk of the volume (temp file, fsync, rename, as every write) and holds what the
original PUT wrote: the same header fields, the same segments' blocks, and the manifest
copied from a surviving fragment's. It is written in the current format, so the rebuilt
archive of an object from an earlier release can differ in its checksums (format 2's
HMAC, format 3's BLAKE3) and in how its trailer's JSON is spelled. A set of small
archives (read whole) takes a shorter path to the same bytes: small_sets.py, run for many
sets at once in batches so that their disk requests and queue commits are shared.

Before rebuilding a fragment reported "missing" the repairer looks again: a fragment
whose disk was only unreachable for a while is checked whole and, if good, simply
taken off the queue. Fragments on disks that are down wait in the queue (replacing a
dead disk is a separate step); an object version that is no longer current leaves the
queue, its archives being garbage for the scrubber. Each entry is one archive set: an
object version, or one part of a multipart object or of an open upload (sets.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import layout
from ..codec import Codec
from ..objects.contracts import VersionRecord
from ..objects.get import ArchiveReader
from ..objects.put import ArchiveWriter, record_size
from .queue import REPAIR_META, RepairQueue
from .sets import find_set, find_sets
from .small_sets import TooFewWhole, rebuild_small, rebuilt_records
from ..throttle import Throttle
from ..verify import ArchiveBytes, verify_archive

log = logging.getLogger("pocket.repair")

_INLINE_BYTES = 64 << 10
_WHOLE_READ_BYTES = 1 << 20   # archives whose records end before this are read in one request
# Sets whose archives are small (read whole: every replicated small object, and erasure-
# coded ones up to a few MiB) are rebuilt in batches: found in the index in one call, and
# all of a batch's stats, source reads and rebuilt archives asked of the disks at once, so
# each disk's go out in a few fetches and batches (node/fetch.py, batch.py) and the queue
# commits ride together (index/batcher.py). 32 at a time sent a lost disk's small archives
# in ~2.4 fetches per set (cProfile of `pocket repair`); a batch's source bytes are bounded
# (the memory), and two batches run at once so one's disk round trips overlap the other's
# decoding. A batch is this many sets per unit of repair.concurrency (256 by default), so a
# gateway that must keep its loop free for clients can make the bursts smaller. Larger sets
# keep repair.concurrency: their read windows bound the memory.
_BATCH_SETS_PER_UNIT = 64
_BATCH_BYTES = 64 << 20
_BATCHES_AT_ONCE = 2
_LOOK_UP = object()   # run_once's marker: the set is found when its repair starts
# Segment bytes per read window: 4 MiB per fragment read of a 4+2 set, not the GET path's 1.
# A node answers a 4 MiB range for half the CPU per MiB of a 1 MiB one, and the client
# reads it for two thirds (measured on this 2-core box); the repair has no first byte to
# hurry. Memory: concurrency x 2 windows (one prefetched) x k fragments of this / k.
_WINDOW_BYTES = 16 << 20


@dataclass
class RepairReport:
    started: float = 0.0
    finished: float = 0.0
    entries: int = 0
    repaired: list[dict] = field(default_factory=list)   # {bucket, key, version_id, indexes}
    fragments: int = 0
    bytes_written: int = 0
    found_good: int = 0       # fragments that turned out to be fine after all
    dropped: int = 0          # versions no longer current: nothing to repair
    deferred: list[dict] = field(default_factory=list)   # a target disk is down
    failed: list[dict] = field(default_factory=list)
    remaining: int = 0        # queue length after the run

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - self.started

    def as_dict(self) -> dict:
        """Shallow: the lists are the report's own. asdict() deep-copied every repaired
        entry, ~0.1 ms each (cProfile of `pocket repair --json`, 259 entries)."""
        return {**self.__dict__, "seconds": round(self.seconds, 3)}


class Repairer:
    def __init__(self, cluster, index, queue: RepairQueue, concurrency: int = 4, timeout: float = 10.0,
                 metrics=None, settle: float = 600.0, rate: float = 0):
        self.cluster, self.index, self.queue = cluster, index, queue
        self.throttle = Throttle(rate)   # bytes/s rebuilt, shared by concurrent repairs (0: unlimited)
        self.settle = settle      # an entry for a version not (yet) in the index waits this long
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.metrics = metrics

    async def run_once(self, limit: int | None = None, backoff: float = 0.0,
                       on_entry: Callable[[dict], None] | None = None) -> RepairReport:
        """Work through the queue once, in its order; entries that failed recently wait `backoff`."""
        report = RepairReport(started=time.time())
        entries = await self.index.call(self.queue.entries, limit)
        now = time.time()
        if backoff:
            entries = [e for e in entries
                       if not e["attempts"] or now - e["updated"] >= min(3600.0, backoff * 2 ** e["attempts"])]
        large = asyncio.Semaphore(self.concurrency)
        batches = asyncio.Semaphore(_BATCHES_AT_ONCE)

        async def one(entry, record=_LOOK_UP):
            try:
                if record is _LOOK_UP:
                    await self.repair(entry, report, large)
                else:
                    await self._repair(entry, report, record)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("repair of %s/%s version %s failed: %s", entry["bucket"], entry["key"],
                            entry["version_id"], e)
                report.failed.append({**_ident(entry), "error": str(e) or repr(e)})
                await self.queue.note_failure(entry["version_id"], str(e) or repr(e))
            finally:
                if on_entry:
                    on_entry(entry)

        async def batch(pairs):
            async with batches:
                await asyncio.gather(*(one(e, r) for e, r in pairs))

        async def in_batches(larger: list):
            """Small sets batch by batch, each batch's found just before it runs; the others
            are started as they are met (`larger`) and wait for `large`."""
            step = _BATCH_SETS_PER_UNIT * self.concurrency
            for start in range(0, len(entries), step):
                chunk = entries[start:start + step]
                records = await self.index.call(find_sets, self.index, chunk)
                larger += [asyncio.ensure_future(one(e)) for e, r in zip(chunk, records) if r is None or not _small(r)]
                await asyncio.gather(*(batch(pairs) for pairs in _by_bytes(
                    [(e, r) for e, r in zip(chunk, records) if r is not None and _small(r)])))

        report.entries = len(entries)
        larger: list[asyncio.Future] = []
        try:
            await in_batches(larger)
            await asyncio.gather(*larger)
        except BaseException:
            for task in larger:
                task.cancel()
            raise
        report.finished = time.time()
        report.remaining = await self.index.call(self.queue.length)
        if report.fragments:
            await self._save_stats(report)
        return report

    async def repair(self, entry: dict, report: RepairReport, large: asyncio.Semaphore | None = None) -> None:
        """Repair one queue entry; a set whose archives are not small waits for `large`."""
        vid = entry["version_id"]
        record = await self.index.call(find_set, self.index, entry["bucket"], entry["key"], vid)
        if record is not None and large is not None and not _small(record):
            async with large:
                return await self._repair(entry, report, record)
        return await self._repair(entry, report, record)

    async def _repair(self, entry: dict, report: RepairReport, record: VersionRecord | None) -> None:
        vid = entry["version_id"]
        if record is None:
            current = await self.index.call(self.index.get_object, entry["bucket"], entry["key"])
            superseded = current is not None and current["version_id"] > vid
            waited = time.time() - entry["first_seen"]
            if not superseded and waited < self.settle:
                # a degraded write is queued before its index commit: give the commit time
                report.deferred.append({**_ident(entry), "indexes": [], "disks": [], "why": (
                    "not indexed yet (a write still in flight, or one whose client was told it failed); "
                    f"if it is never committed, this entry is dropped in {self.settle - waited:.0f}s")})
                return
            await self.queue.drop(vid)
            report.dropped += 1
            return
        volume = self.cluster.volumes[record["volume"]]
        targets = set(entry["missing"]) | set(entry["corrupt"])
        down = {i for i in targets if not self.cluster.is_up(volume["disks"][i])}
        good = {i for i in set(entry["missing"]) - down if await self._fine(volume, vid, i)}
        build = targets - down - good
        report.found_good += len(good)
        written: dict[int, int] = {}
        if build:
            try:
                written = await self._rebuild_set(record, volume, build, targets)
            except BaseException:
                if good:
                    await asyncio.shield(self.queue.resolve(vid, good))
                raise
            if written:
                report.fragments += len(written)
                report.bytes_written += sum(written.values())
                report.repaired.append({**_ident(entry), "indexes": sorted(written)})
                if self.metrics:
                    self.metrics.repaired_fragments.inc(len(written))
                    self.metrics.repaired_bytes.inc(sum(written.values()))
        if good or written:
            await self.queue.resolve(vid, good | set(written))
        if down:
            report.deferred.append({**_ident(entry), "indexes": sorted(down),
                                    "disks": sorted(volume["disks"][i] for i in down)})
        if len(written) < len(build):
            raise RuntimeError(f"rebuilt fragments {sorted(written)} of {sorted(build)}; the other writes failed")

    async def _rebuild_set(self, record: VersionRecord, volume: dict, build: set[int],
                           avoid: set[int]) -> dict[int, int]:
        """A small set in a few steps (small_sets.py), unless fewer than k of its archives
        are whole; then, like any other set, streamed segment by segment."""
        if _small(record):
            try:
                return await rebuild_small(self.cluster, self.queue, record, volume, build, avoid, self.throttle)
            except TooFewWhole as e:
                log.info("%s; rebuilding it segment by segment", e)
        return await self._rebuild(record, volume, build, avoid)

    async def _fine(self, volume: dict, vid: str, i: int) -> bool:
        """Is a fragment reported missing actually there and whole?"""
        disk = self.cluster.disks[volume["disks"][i]]
        name = layout.archive_name(vid, i)
        try:
            size = await disk.stat(name)
            if size is None:
                return False
            verdict = await verify_archive(disk, name, size, Throttle(0))
        except Exception:
            return False
        return verdict.problem is None

    async def rebuild_fragments(self, record: VersionRecord, volume: dict, build: set[int]) -> dict[int, int]:
        """Rebuild fragments `build` of one archive set onto `volume`'s disks (a slot move
        passes the volume as it will be, with the new disk in the slot)."""
        return await self._rebuild(record, volume, build, build)

    async def _rebuild(self, record: VersionRecord, volume: dict, build: set[int], avoid: set[int]) -> dict[int, int]:
        """Write archives `build` of the version; returns {index: bytes written} of those committed."""
        codec = Codec(record["k"], record["m"])
        manifest, held = await self._manifest(volume, record, avoid)
        reader = ArchiveReader(self.cluster, codec, manifest, volume, avoid=frozenset(avoid), held=held,
                               window_bytes=_WINDOW_BYTES)
        writer = ArchiveWriter(self.cluster, codec, volume, record["version_id"], layout.stored_segment_size(manifest),
                               quorum=1, timeout=self.timeout, only=frozenset(build), keep_on_abort=True)
        geo = reader.geometry
        loop = asyncio.get_running_loop()
        try:
            writer.start()
            if geo.segments:
                async for blocks in reader.blocks(0, geo.segments - 1):
                    wanted = writer.wanted()
                    if sum(map(len, blocks.values())) <= _INLINE_BYTES:
                        records = rebuilt_records(codec, blocks, wanted)
                    else:
                        records = await loop.run_in_executor(None, rebuilt_records, codec, blocks, wanted)
                    await self.throttle.take(sum(record_size(r) for r in records if r is not None))
                    await writer.write_records(records)
            done = await writer.finish(manifest)
        except BaseException as e:
            await asyncio.shield(writer.abort(repr(e)))
            raise
        finally:
            reader.close()   # a rebuild that failed midway leaves its fragment streams open
            extra = [d for d in reader.damage if d.index not in avoid]
            if extra:   # more damage met on the way: queue it for the next round
                self.queue.add_later(record, {d.index: (d.kind, d.reason) for d in extra}, "repair")
        size = geo.records_end() + len(layout.pack_trailer(manifest))
        return {i: size for i in done if i in build}

    async def _manifest(self, volume: dict, record: dict, avoid: set[int]) -> tuple[dict, dict[int, bytes]]:
        """The manifest every archive of the version carries, read from a good one. One of
        an unkeyed archive does not do for an object the index knows as keyed: it is forged.

        A small archive is read whole instead, in the one request its manifest would have
        cost, and handed to the reader (`held`): most archives a lost disk held are small
        (replicated objects), and requests, not bytes, were most of their repair's CPU
        (cProfile of `pocket repair`: ~6 node requests per rebuilt fragment)."""
        vid = record["version_id"]
        whole = _small(record)
        order = sorted(range(len(volume["disks"])), key=lambda i: (i in avoid, not self.cluster.is_up(volume["disks"][i])))
        problems = []
        for i in order:
            disk, name = self.cluster.disks[volume["disks"][i]], layout.archive_name(vid, i)
            try:
                held: dict[int, bytes] = {}
                if whole:
                    raw = await disk.read(name, 0, 1 << 62)
                    verdict = await verify_archive(ArchiveBytes(raw), name, len(raw), Throttle(0))
                    if verdict.manifest is None:
                        raise layout.CorruptFragment(verdict.problem)
                    manifest = verdict.manifest
                    if verdict.problem is None:   # else the reader reads it again, and finds the damage
                        held[i] = raw
                else:
                    manifest = await disk.read_manifest(name)
                if manifest.get("version_id") == vid and layout.accepted(manifest) <= layout.accepted(record):
                    return manifest, held
            except Exception as e:
                problems.append(f"{i}: {e!r}")
        raise RuntimeError(f"no fragment of version {vid} has a readable manifest ({'; '.join(problems)})")

    async def _save_stats(self, report: RepairReport) -> None:
        """Accumulate measured repair throughput; `pocket status` derives repair time from it."""
        stats = await self.index.call(self.queue.progress, REPAIR_META) or {"bytes": 0, "seconds": 0.0, "fragments": 0}
        stats = {"bytes": stats["bytes"] + report.bytes_written,
                 "seconds": stats["seconds"] + report.seconds,
                 "fragments": stats["fragments"] + report.fragments,
                 "last_run": report.finished}
        stats["throughput"] = stats["bytes"] / stats["seconds"] if stats["seconds"] else 0.0
        try:
            await self.queue.save_progress(REPAIR_META, stats)
        except Exception as e:
            log.warning("could not save repair statistics: %r", e)

    async def run_forever(self, interval: float) -> None:
        """Background loop: repair whenever something is queued, and retry every `interval`."""
        while True:
            try:
                await asyncio.wait_for(self.queue.wakeup.wait(), interval)
            except TimeoutError:
                pass
            self.queue.wakeup.clear()
            try:
                if await self.index.call(self.queue.length):
                    report = await self.run_once(limit=1000, backoff=interval)
                    if report.fragments or report.failed:
                        log.info("repair: rebuilt %d fragments (%.1f MiB) of %d objects in %.1fs; %d failed, "
                                 "%d waiting for disks, %d queued", report.fragments, report.bytes_written / 2**20,
                                 len(report.repaired), report.seconds, len(report.failed), len(report.deferred),
                                 report.remaining)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("repair round failed")


def _small(record: dict) -> bool:
    """Are the version's archives small enough to read whole (the set's record has its geometry)?"""
    try:
        return layout.geometry(record, record["k"]).records_end() <= _WHOLE_READ_BYTES
    except (KeyError, TypeError):   # a set record without its geometry: read the manifest alone
        return False


def _by_bytes(pairs: list) -> list[list]:
    """(entry, record) pairs of small sets in runs whose source archives (k read whole each)
    add up to at most _BATCH_BYTES."""
    runs: list[list] = []
    size = _BATCH_BYTES
    for entry, record in pairs:
        need = record["k"] * layout.geometry(record, record["k"]).records_end()
        if size + need > _BATCH_BYTES:
            runs.append([])
            size = 0
        runs[-1].append((entry, record))
        size += need
    return runs


def _ident(entry: dict) -> dict:
    return {"bucket": entry["bucket"], "key": entry["key"], "version_id": entry["version_id"]}
