"""`pocket migrate copy`: the backfill, split into key ranges that any number of workers share.

A bucket's keys are cut into ranges once (from the inventory; index/migrations.py keeps
them with their leases). A worker leases a range, lists that stretch of the source
afresh (so what changed since the plan is seen; or, when the plan read an S3 Inventory
report, reads it from there: inventory_keys.py), and copies every version the Pocket
bucket lacks, oldest first, a few keys at once. Its progress (`position`: every key up
to it is done) and the lease are renewed every few seconds; a killed worker's lease
expires and the next one resumes its range from `position`. A version already in Pocket
and equal (same source version id, or the same ETag, size and Last-Modified) is skipped,
so a restart copies nothing twice, and an object overwritten at the source since the
last pass is copied again.

Versions get internal ids made from the source's Last-Modified (strictly increasing
along a key's history), so they sort among themselves and before anything written
through the gateway since (dual writes are newer): a backfilled old version never hides
a newer one.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time

from ..index import migrations as M
from ..index.versions import NULL
from ..objects.buckets import BucketService
from . import copier, inventory_keys, listing, presigned_get, ranges, state
from .copier import RateLimit, SourceChanged, Wanted
from .tally import Tally
from .version_ids import internal_ids

log = logging.getLogger("pocket.migrate.copy")

LEASE_TTL = 30.0
CHECKPOINT = 3.0          # seconds between progress records (and lease renewals)
RETRIES = 5
CONVERGE = 5          # listings of a key that changes at the source while it is copied


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Backfill:
    def __init__(self, cfg, tc, services, concurrency: int = 16, rate: float = 0.0,
                 on_progress=None, via=None, forked: bool = False):
        """`services`: a ToolServices (its object services are built at the first write);
        `via`: a gateway_copy.Sender, when small versions go through the running gateway;
        `forked`: a worker forked by a copy command, whose parent takes over the ranges
        of workers that die (workers.py), so it leaves when it finds none to lease."""
        self.cfg, self.tc, self.services = cfg, tc, services
        self.via = via
        self.index = tc.index
        self.concurrency = max(1, concurrency)
        self.limit = RateLimit(rate)
        self.owner = worker_id()
        self.on_progress = on_progress
        self.moved = [0]          # bytes read from the source, for the rate and ETA
        self.urls = presigned_get.PresignedGets(self.concurrency)
        self.streams = asyncio.Semaphore(copier.LARGE_STREAMS)
        self.streaming = 0        # large bodies the keys this worker has started will stream at once
        self._freed = asyncio.Event()
        self.forked = forked
        self.others_moved = asyncio.Event()   # set by the parent when a forked worker reports
        self.list_source = False  # `copy --list`: list the source even when the plan read an S3 Inventory report

    async def close(self) -> None:
        await self.urls.close()

    # ---- one bucket --------------------------------------------------------------------------
    async def prepare(self, source_bucket: str, target: str, client) -> dict:
        """The Pocket bucket made and its ranges cut, once, before any worker leases one."""
        loop = asyncio.get_running_loop()
        versioning = await loop.run_in_executor(None, listing.versioning_of, client, source_bucket)
        await self._ensure_bucket(target, versioning)
        total, earlier = await ranges.plan(self.cfg, self.index, target, client, source_bucket)
        return {"versioning": versioning, "total_bytes": total, "earlier_bytes": earlier,
                "mean_size": ranges.mean_size(self.index, target),
                "from_report": not self.list_source and inventory_keys.reported(self.cfg.data, target)}

    async def bucket(self, source_bucket: str, target: str, src, client, prepared: dict | None = None,
                     record: bool = True) -> Tally:
        """Lease ranges of the bucket until none is left; `record`: the caller is the only (or
        last) worker of this command, so the outcome goes into the migration record."""
        tally = Tally(target)
        prepared = prepared or await self.prepare(source_bucket, target, client)
        versioning, tally.total_bytes = prepared["versioning"], prepared["total_bytes"]
        tally.earlier_bytes = prepared.get("earlier_bytes", 0)
        sem = asyncio.Semaphore(self.concurrency)    # shared by this worker's ranges
        served = self.urls.of(client).served
        sent = self.via.written if self.via else 0
        walks: set[asyncio.Task] = set()
        try:
            for seq in itertools.count():
                if walks and self.streaming >= copier.LARGE_STREAMS:
                    # as many large bodies started as this process streams at once: the next
                    # range is left to a worker with room (another process, another machine)
                    # rather than queued here behind this one's slots
                    self._freed.clear()
                    freed = asyncio.ensure_future(self._freed.wait())
                    await asyncio.wait([*walks, freed], return_when=asyncio.FIRST_COMPLETED)
                    freed.cancel()
                    await _reap(walks)
                    continue
                self._reclaim_dead(target)
                owner = f"{self.owner}.{seq}"            # one lease holder per range walked at once
                rng = self.index.write(lambda ops: M.lease_range(ops, target, owner, LEASE_TTL))
                if rng is not None:
                    # the next range is leased as soon as this one is listed, so the slots stay
                    # busy across range ends instead of draining at each
                    listed = asyncio.Event()
                    walk = asyncio.ensure_future(self._walk(client, source_bucket, target, bool(versioning), rng,
                                                            tally, sem, owner, listed, prepared.get("from_report")))
                    walks.add(walk)
                    waiter = asyncio.ensure_future(listed.wait())
                    await asyncio.wait([walk, waiter], return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    await _reap(walks)
                    continue
                if walks:        # ours are still finishing; they may end the bucket
                    await asyncio.wait(walks, return_when=asyncio.FIRST_COMPLETED)
                    await _reap(walks)
                    continue
                self.others_moved.clear()
                with self.index.read() as ops:
                    left = [r for r in M.ranges(ops, target) if not r["done"]]
                if not left or self.forked:
                    break
                # other live workers hold the rest: wait for them (or for their leases to lapse);
                # a worker this command forked says when it is done with a range, at once
                self._progress(tally)
                try:
                    await asyncio.wait_for(self.others_moved.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
        except BaseException:
            for walk in walks:
                walk.cancel()
            await asyncio.gather(*walks, return_exceptions=True)
            raise
        tally.presigned = self.urls.of(client).served - served
        tally.via_gateway = (self.via.written if self.via else 0) - sent
        if record:
            self.record(target, tally)
        return tally

    def _reclaim_dead(self, bucket: str) -> None:
        """Release ranges leased by a worker of this machine whose process is gone (a copy
        killed and restarted here resumes at once instead of waiting for the lease to lapse)."""
        host = socket.gethostname()
        with self.index.read() as ops:
            owners = {r["owner"] for r in M.ranges(ops, bucket) if r["owner"] and not r["done"]}
        for owner in owners:
            name, _, rest = owner.partition(":")
            pid = rest.partition(":")[0]
            if name == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                for no in [r["no"] for r in self._ranges(bucket) if r["owner"] == owner]:
                    self.index.write(lambda ops, no=no: M.release_range(ops, bucket, no, owner))
                log.info("took back the ranges of %s, a copy process that is gone", owner)

    def _ranges(self, bucket: str) -> list[dict]:
        with self.index.read() as ops:
            return M.ranges(ops, bucket)

    async def _ensure_bucket(self, name: str, versioning: str) -> None:
        """The Pocket bucket, created with the source's versioning state when missing
        (`pocket migrate enable` normally did this, with the rest of the configuration)."""
        found = self.index.get_bucket(name)
        if found is not None and (not versioning or found.get("versioning") == versioning):
            return          # nothing to write: no object services needed (services.py)
        s = self.services
        buckets = BucketService(self.index, s.writer, s.objects, s.multipart)
        if buckets.get(name) is None:
            owner = self.cfg.credentials[0].access_key if self.cfg.credentials else ""
            await buckets.create(name, {"owner": owner, "created": time.time()})
            log.info("created bucket %s (it did not exist in Pocket)", name)
        if versioning and (buckets.get(name) or {}).get("versioning") != versioning:
            await buckets.configure(name, {"versioning": versioning})

    # ---- one range ---------------------------------------------------------------------------
    async def _walk(self, client, source_bucket: str, bucket: str, versioned: bool, rng: dict, tally: Tally,
                    sem: asyncio.Semaphore, owner: str, listed: asyncio.Event, from_report: bool = False) -> None:
        """Copy one leased range; `listed` is set once its listing is done (its last keys may
        still be copying). `from_report`: its keys are read from the plan's S3 Inventory
        report instead (inventory_keys.py)."""
        no, end = rng["no"], rng["end"]
        pending: dict[str, asyncio.Task] = {}
        order: list[str] = []          # keys in listing order, not yet checkpointed
        position, last_checkpoint = rng["position"], time.monotonic()

        def checkpoint(done: bool = False) -> None:
            nonlocal position, last_checkpoint
            while order and order[0] not in pending:
                position = order.pop(0)
            # progress for `status` and pocket_migrate_objects_copied: objects done (copied, or
            # found equal) and bytes moved since the last checkpoint of any of this bucket's ranges
            now_done = (tally.copied + tally.skipped, tally.bytes)
            add = {"objects": now_done[0] - tally.reported[0], "bytes": now_done[1] - tally.reported[1]}
            tally.reported = now_done
            self.index.write(lambda ops: M.update_range(ops, bucket, no, owner, LEASE_TTL,
                                                        position=position, done=done, add=add))
            last_checkpoint = time.monotonic()

        async def one_key(key: str, history: list[dict], streams: int) -> None:
            try:
                await self._copy_key(client, source_bucket, bucket, key, history, tally, versioned)
            except Exception as e:
                tally.errors += 1
                tally.failed.append({"key": key, "error": repr(e)[:300]})
                log.exception("could not copy %s/%s; run copy again to retry", bucket, key)
            finally:
                sem.release()
                pending.pop(key, None)
                self.streaming -= streams
                self._freed.set()

        async def renew() -> None:
            """Keep the lease while one slow object holds every slot (no checkpoint then)."""
            while True:
                await asyncio.sleep(LEASE_TTL / 4)
                self.index.write(lambda ops: M.update_range(ops, bucket, no, owner, LEASE_TTL))

        renewer = asyncio.ensure_future(renew())
        try:
            keys = inventory_keys.source_keys(self.cfg.data, bucket, rng["position"], end) if from_report else \
                listing.source_keys(client, source_bucket, versioned, rng["position"], end)
            async for key, history in keys:
                await sem.acquire()
                order.append(key)
                streams = _streams_of(history)
                self.streaming += streams
                pending[key] = asyncio.ensure_future(one_key(key, history, streams))
                if time.monotonic() - last_checkpoint > CHECKPOINT:
                    checkpoint()
                    self._progress(tally)
            listed.set()
            if pending:
                await asyncio.gather(*pending.values(), return_exceptions=True)
            checkpoint(done=True)
        except M.LeaseLost:
            log.warning("range %d of %s was taken over by another worker (our lease expired); leaving it", no, bucket)
        except BaseException:
            for task in pending.values():
                task.cancel()
            self.index.write(lambda ops: M.release_range(ops, bucket, no, owner))
            raise
        finally:
            listed.set()
            renewer.cancel()
        self._progress(tally)

    async def _copy_key(self, client, source_bucket: str, bucket: str, key: str, history: list[dict],
                        tally: Tally, versioned: bool) -> None:
        """Copy the versions of one key that Pocket lacks, oldest first.

        A key that changes at the source while it is copied (in dual-write mostly a write
        through the gateway, which Pocket holds already) is listed again and its new history
        copied, up to CONVERGE times; only a key still changing after that is counted as
        changed, and keeps the bucket in dual-write until a later pass finds it settled."""
        for attempt in range(CONVERGE):
            if await self._copy_history(client, source_bucket, bucket, key, history, tally, first=attempt == 0):
                return
            history = await asyncio.get_running_loop().run_in_executor(
                None, listing.key_history, client, source_bucket, versioned, key)
        tally.changed += 1
        log.info("%s/%s kept changing at the source during the copy; run copy again to take it", bucket, key)

    async def _copy_history(self, client, source_bucket: str, bucket: str, key: str, history: list[dict],
                            tally: Tally, first: bool) -> bool:
        """Copy what Pocket lacks of `history` (newest first); False if the source changed
        under the copy. Versions found present count as skipped on the first look only."""
        oldest_first = history[::-1]
        for v, internal in zip(oldest_first, internal_ids(oldest_first)):
            w = Wanted(key, v["version_id"], v["delete_marker"], v["size"], v["etag"], v["last_modified"], internal)
            if self._present(bucket, w):
                tally.skipped += 1 if first else 0
                continue
            for attempt in range(RETRIES):
                try:
                    before = self.moved[0]
                    await copier.copy_version(self.services.objects, self.services.multipart, client, source_bucket, bucket, w,
                                              self.limit, self.moved, self.urls.of(client), self.via,
                                              self.streams)
                    tally.copied += 1
                    tally.bytes += w.size
                    log.debug("copied %s/%s version %s (%d bytes)", bucket, key, w.version_id, w.size)
                    break
                except SourceChanged as e:
                    log.debug("%s; listing it again", e)
                    return False
                except copier.NeedsRestore as e:
                    tally.errors += 1
                    tally.failed.append({"key": key, "version_id": w.version_id, "error": str(e)})
                    log.error("%s", e)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.moved[0] = before
                    if attempt == RETRIES - 1:
                        tally.errors += 1
                        tally.failed.append({"key": key, "version_id": w.version_id, "error": repr(e)[:300]})
                        log.error("could not copy %s/%s version %s after %d tries: %r; run copy again to retry",
                                  bucket, key, w.version_id, RETRIES, e)
                        break
                    await asyncio.sleep(min(30.0, 0.5 * 2 ** attempt))
        return True

    def _present(self, bucket: str, w: Wanted) -> bool:
        """Is this source version in Pocket already, equal as far as the listing tells?"""
        if w.version_id != NULL:
            rec = self.index.get_version(bucket, w.key, w.version_id)
            return rec is not None and (w.delete_marker or rec.get("etag") == w.etag)
        rec = self.index.get_version(bucket, w.key, NULL) if w.delete_marker else self.index.get_object(bucket, w.key)
        if rec is None:
            return False
        if not rec.get("migrated_from") and rec["version_id"][:16] > w.internal_id[:16]:
            return True        # written through the gateway after this version: newer than the copy
        same_time = abs(rec.get("created", 0) - w.last_modified) < 1.0
        return same_time and (w.delete_marker or (rec.get("etag") == w.etag and rec.get("size") == w.size))

    # ---- reporting ---------------------------------------------------------------------------
    def _progress(self, tally: Tally) -> None:
        if self.on_progress:
            self.on_progress(tally)

    def record(self, bucket: str, tally: Tally) -> None:
        """Counters into the migration record; a clean, complete backfill moves dual-write on."""
        def update(ops):
            m = state.get(ops, bucket)
            if m is None:
                return None
            c = m.counters
            for name, n in (("copied_objects", tally.copied), ("copied_bytes", tally.bytes),
                            ("copy_errors", tally.errors), ("written_via_gateway", tally.via_gateway)):
                c[name] = c.get(name, 0) + n
            c["last_copy"] = {**tally.as_dict(), "at": time.time()}
            finished = all(r["done"] for r in M.ranges(ops, bucket)) and not tally.errors and not tally.changed
            state.put(ops, m)        # before the move, which reads the record again
            if finished and m.state == state.DUAL_WRITE:
                return state.move(ops, bucket, state.BACKFILLED, "copy finished")
            return m
        self.index.write(update)


async def _reap(walks: set[asyncio.Task]) -> None:
    """Drop the finished range walks; a walk's failure (not a copy error: those are counted) ends the copy."""
    for walk in [w for w in walks if w.done()]:
        walks.discard(walk)
        walk.result()


def _streams_of(history: list[dict]) -> int:
    """Large bodies a key's copy streams at once (its versions are copied one after another):
    a part per slot for a multipart version, up to copier.PARTS_AT_ONCE."""
    def one(v: dict) -> int:
        if v["delete_marker"] or v["size"] <= copier.CHUNK:
            return 0
        parts = int(v["etag"].rsplit("-", 1)[1]) if copier.is_multipart_etag(v["etag"]) else 1
        return min(parts, copier.PARTS_AT_ONCE)
    return max(map(one, history), default=0)


def _alive(pid: int) -> bool:
    """Whether the process runs; a zombie does not (a copy's forked worker that was killed
    stays one until the parent, busy with its own ranges, reaps it at the end)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:        # gone meanwhile, or no /proc: kill(0) found it
        return os.path.exists(f"/proc/{pid}") or not os.path.isdir("/proc")
