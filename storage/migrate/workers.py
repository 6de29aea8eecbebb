"""`pocket migrate copy` as several processes: the backfill is CPU-bound in Python
(botocore on the source side, the write path on Pocket's), so one process uses one core
at most while rclone's copy and the gateway it writes through use several.

The command first forks as many children as it may want (`--workers`, else one per core
but itself), before anything is opened, so no thread, socket or LMDB handle crosses the
fork (what they import to write is imported first, and shared). It then makes each
bucket and cuts its ranges (ranges.py), starts the children the buckets want, which
lease ranges beside it exactly as copies on other machines would, and tells the others
to leave. Each child sends its tallies back through a pipe (a JSON line per progress
step, its report last), so the progress line and the summary count every worker, and
the outcome is recorded in the migration record once, by the parent, when all are done.

Beside a running gateway that takes the small objects, one process was enough for them
and was the default; but a large object's bytes are all the copy's own work, and with
one process a large copy used one core of two (the event loop holding the GIL for ~90 %
of the time, py-spy --gil) while rclone and the gateway used both. So the worker count
is chosen once the buckets' ranges are cut: one per core when some bucket's objects
average more than copier.CHUNK, else one, which then copies on in the same session.
"""
from __future__ import annotations

import logging

from .. import gc_tuning
from . import forked, gateway_copy, settings
from .backfill import Backfill
from .tally import Tally
from .copier import CHUNK, PARTS_AT_ONCE
from .services import ToolServices

log = logging.getLogger("pocket.migrate.copy")
# what a copy worker's failure or loss means to the operator (forked.Child)
_COPY = {"what": "copy worker", "on_failure": "its ranges are taken over by the others when its lease lapses",
         "on_loss": "run copy again to finish its ranges"}

_SUMMED = ("copied", "skipped", "bytes", "errors", "changed", "presigned", "via_gateway")


def default_workers(hand_over: bool) -> int:
    """One copy process per core, at most 4; half as many when the running gateway takes
    the small objects (`hand_over`, gateway_copy.py): it does their writing on the other
    cores. With a 1-process gateway on 2 cores, two copy processes were slower than one
    (bench/RESULTS.md, Session 6)."""
    cores = forked.cores()
    return max(1, cores // 2) if hand_over else cores


def copy(cfg, run_tool, buckets, args: dict, concurrency: int, rate: float, workers: int | None = None,
         on_progress=None) -> dict:
    """Copy every bucket with `workers` processes (None: `default_workers`, or one per core
    for buckets of large objects); the report of `pocket migrate copy --json`.

    `run_tool(cfg, work, read_packs)` runs `await work(tool_cluster)` against the cluster
    (cli/common.py); a copy reads no archive, so the packs of disks a running gateway owns
    are not read (tools/cluster.py). `concurrency` and `rate` are for the whole command,
    shared out among the workers."""
    pairs = settings.targets(buckets, args.get("target"))
    hand_over = gateway_copy.will_hand_over(cfg)
    # as many workers as there may be are forked first, before anything is opened; each
    # waits to be told to copy (with the prepared buckets) or to leave
    forks = max(1, workers or forked.cores()) - 1
    if forks:
        _share_imports()
    children = [forked.Child.fork(lambda out, go: run_tool(cfg, lambda tc: _work(
        cfg, tc, pairs, _without_keys(args), go["per"], go["prepared"], hand_over, out.progress), False), **_COPY)
        for _ in range(forks)]
    try:
        return run_tool(cfg, lambda tc: _lead(cfg, tc, pairs, args, concurrency, rate, workers, hand_over,
                                              children, on_progress), False)
    finally:
        for child in children:
            child.stop()


def _share_imports() -> None:
    """Import before forking what a worker otherwise imports only once it is told to go:
    its cluster's index (LMDB), the write path (object services, the codec and zfec) and
    the source listing. Imported in each child they cost it CPU after `go`, while the
    parent, which needs them too, was copying already: the child's object services took
    16-27 ms to build against the parent's 15 and its first source byte came 23-51 ms
    after the parent's (4 x 32 MiB, two processes). Imported here they are the parent's
    own imports, made a little earlier and shared with every child; only a copy that
    writes nothing at all (every version in Pocket already) pays for them unused."""
    from .. import executor  # noqa: F401
    from ..index import lmdb_backend  # noqa: F401
    from ..objects import build  # noqa: F401
    from . import list_http  # noqa: F401


async def _lead(cfg, tc, pairs, args: dict, concurrency: int, rate: float, workers: int | None, hand_over: bool,
                children: list, on_progress) -> dict:
    """Prepare every bucket, start as many of the forked workers as the buckets want, and
    copy beside them in the same session."""
    prepared = await _prepare(cfg, tc, pairs, args, _share(concurrency, rate, 1))
    large = any(p["mean_size"] > CHUNK for p in prepared.values())
    # beside a gateway that takes the small objects, one process is enough for those; a
    # bucket of large ones is all the copy's own work
    n = workers or (forked.cores() if large else default_workers(hand_over))
    per = _share(concurrency, rate, n)
    going = children[:n - 1]
    for child in going:
        child.start({"prepared": prepared, "per": per})
    for child in children[n - 1:]:
        child.release()
    return await _work(cfg, tc, pairs, args, per, prepared, hand_over, _Combined(going, on_progress).show, going)


def _share(concurrency: int, rate: float, workers: int) -> dict:
    return {"concurrency": max(1, -(-concurrency // workers)), "rate": rate / workers if rate else 0.0}


async def _prepare(cfg, tc, pairs, args: dict, per: dict) -> dict:
    """Each bucket made and its ranges cut, before any worker leases one."""
    s = ToolServices(cfg, tc)
    try:
        fill = Backfill(cfg, tc, s, per["concurrency"], per["rate"])
        fill.list_source = bool(args.get("list_source"))
        out = {}
        for source_bucket, target in pairs:
            src, _, client = _source(cfg, tc, source_bucket, target, args, per)
            out[target] = await fill.prepare(source_bucket, target, client)
        return out
    finally:
        await s.close()


def _source(cfg, tc, source_bucket: str, target: str, args: dict, per: dict):
    src, record, keys_file = settings.resolve(cfg, tc.index, source_bucket, target, args)
    if record is None:
        settings.remember(tc.index, target, src, None)
    # a connection per object in flight, and per part for multipart objects (copier.PARTS_AT_ONCE)
    return src, record, settings.client_for(src, keys_file, per["concurrency"] * PARTS_AT_ONCE)


async def _work(cfg, tc, pairs, args: dict, per: dict, prepared: dict | None, hand_over: bool, on_progress,
                children: list | None = None) -> dict:
    """One worker's share of every bucket; the parent (`children` given, perhaps none) then
    waits for the children and records each bucket's combined outcome."""
    import asyncio
    s = ToolServices(cfg, tc)
    via = gateway_copy.sender_for(cfg, tc, hand_over)
    try:
        fill = Backfill(cfg, tc, s, per["concurrency"], per["rate"], on_progress, via, forked=children is None)
        loop = asyncio.get_running_loop()
        for child in children or ():
            child.on_line = lambda: loop.call_soon_threadsafe(fill.others_moved.set)
        # as the gateway does once ready: the collector kept rescanning the start-up's objects
        # (py-spy --native: gc_collect_main in a quarter of a large copy's samples) for cycles
        # that copying almost never makes; a small-object copy takes ~12 % less CPU tuned
        gc_tuning.tune(collect=False)
        tallies = []
        try:
            for source_bucket, target in pairs:
                src, _, client = _source(cfg, tc, source_bucket, target, args, per)
                tallies.append(await fill.bucket(source_bucket, target, src, client,
                                                 prepared and prepared[target], record=prepared is None))
        finally:
            await fill.close()
            if via is not None:
                await via.close()
        own = {"buckets": [t.as_dict() for t in tallies], "worker": fill.owner}
        if children is None:
            return own
        reports = await asyncio.get_running_loop().run_in_executor(None, lambda: [c.wait() for c in children])
        if prepared:
            for tally in tallies:
                for report in reports:
                    _add(tally, next((b for b in report.get("buckets", ()) if b["bucket"] == tally.bucket), None))
                fill.record(tally.bucket, tally)
        buckets = [t.as_dict() for t in tallies]
        failed = [r["error"] for r in reports if r.get("error")]
        each = [{"worker": r.get("worker"), "copied": sum(b["copied"] for b in r.get("buckets", ()))}
                for r in [own] + reports]
        return {"buckets": buckets, "worker": fill.owner, "workers": each, "worker_errors": failed,
                "ok": not failed and not any(b["errors"] for b in buckets)}
    finally:
        await s.close()


def _add(tally: Tally, other: dict | None) -> None:
    if other is None:
        return
    tally.copied += other["copied"]
    tally.skipped += other["skipped"]
    tally.bytes += other["bytes"]
    tally.errors += other["errors"]
    tally.changed += other["changed_during_copy"]
    tally.presigned += other.get("read_presigned", 0)
    tally.via_gateway += other.get("written_via_gateway", 0)
    tally.failed += other["failed"]


def _without_keys(args: dict) -> dict:
    """A child's source arguments: the parent stored explicit keys already (settings.resolve)."""
    return {k: v for k, v in args.items() if k not in ("source_access_key", "source_secret_key")}


class _Combined:
    """The parent's progress callback: its own tally plus each child's latest."""

    def __init__(self, children: list[forked.Child], on_progress):
        self.children, self.on_progress = children, on_progress

    def show(self, tally: Tally) -> None:
        if self.on_progress is None:
            return
        total = Tally(tally.bucket, started=tally.started, total_bytes=tally.total_bytes,
                      earlier_bytes=tally.earlier_bytes)
        for f in _SUMMED:
            setattr(total, f, getattr(tally, f))
        for c in self.children:
            if c.latest.get("bucket") == tally.bucket:
                _add(total, c.latest)
        self.on_progress(total)
