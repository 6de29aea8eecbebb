"""`pocket migrate verify` over several processes, when there is enough to compare.

Past the listing tier a verify is CPU-bound in Python: a HEAD of every version (~0.5 ms
of CPU each: presigning, http.client, parsing the answer), and with --deep the source's
bytes and Pocket's read, every record's checksum and the comparison. One process uses one
core at most, while `rclone check` and the gateway it reads through use several. So, as
the copy does (workers.py), the command forks workers that each check a share of the
versions beside it.

The order is what makes forking safe: every bucket is planned first (its index read, its
source listed, the listing tier compared: verify.py's `plan`) with no event loop and no
thread left over, and the index closed; the children are forked then, inheriting the
plan, and each opens its own source client and, for the tiers that read Pocket's bytes,
its own cluster (cli/common.run_tool). A child sends back what it found through the pipe
the copy's children use (forked.py); the parent checks its own share, adds the children's
findings and counts, and alone runs --fix, clears or marks dirty keys and writes the
migration record. A child that fails fails the verify: its share was not compared.
"""
from __future__ import annotations

import logging
import os

from .. import gc_tuning, malloc_tuning
from . import forked, settings, state
from .verify import Verifier, needs_cluster

log = logging.getLogger("pocket.migrate.verify")

# Estimated CPU seconds of the work past the listing, to decide how many workers it is
# worth: a HEAD per version (0.47 ms measured, 10,000 versions), a deep read per version
# and per byte (~3 s per GiB: source, archives, checksums, comparison; 8 x 128 MiB).
PER_VERSION = 0.0005
PER_READ = 0.0005
PER_BYTE = 3.0 / (1 << 30)
WORTH = 0.5       # seconds of work per worker forked: a fork, and for --deep its own disks opened
# what a verify worker's failure or loss means to the operator (forked.Child)
_VERIFY = {"what": "verify worker", "on_failure": "its share is not compared, so the verify fails",
           "on_loss": "its share was not compared: run verify again"}


def run(cfg, run_tool, buckets, args: dict, *, attrs: bool = False, deep: bool = False, sample: float | None = None,
        fix: bool = False, concurrency: int = 16, workers: int | None = None) -> dict:
    """Verify each bucket with `workers` processes (None: `default_workers`); the report.
    `run_tool(cfg, work, lazy_packs=True)` runs `await work(tool_cluster)` (cli/common.py)."""
    from ..index.index import open_index
    gc_tuning.tune(collect=False)      # the start-up's objects are not scanned again (as the copy does)
    if deep or sample:
        malloc_tuning.keep_freed_memory()   # its MiB buffers reuse pages, not fault in fresh ones
    cluster = needs_cluster(deep, sample, fix)
    index = open_index(cfg)
    try:
        verifiers = []
        for source_bucket, target in settings.targets(buckets, args.get("target")):
            src, _, keys_file = settings.resolve(cfg, index, source_bucket, target, args)
            v = Verifier(index, settings.client_for(src, keys_file, concurrency), source_bucket, target, attrs=attrs,
                         deep=deep, sample=sample, concurrency=concurrency)
            v.source, v.keys_file = src, keys_file
            v.plan()
            verifiers.append(v)
        n = max(1, min(workers or default_workers(verifiers), max(len(v.further) for v in verifiers)))
    except BaseException:
        index.close()
        raise
    if not cluster and not any(v.further for v in verifiers):
        try:         # nothing past the listings: no event loop (asyncio is ~15 ms of an empty bucket's start-up)
            out = [dict(v.conclude(), workers=1) for v in verifiers]
        finally:
            index.close()
        return {"buckets": out, "clean": all(b["clean"] for b in out)}
    import asyncio
    if n > 1 or cluster:
        index.close()        # a forked child must not inherit it open; run_tool opens the cluster's own
        index = None
    per = max(1, -(-concurrency // n))
    shares = [split(v.further, n) for v in verifiers]
    children = []
    if n > 1:
        from .presigned_get import CHUNK    # bodies up to it are read whole over aiohttp
        _share_imports(cluster, any(read and e.size <= CHUNK for v in verifiers for e, _, read in v.further))
        children = [forked.Child.fork(lambda _out, _go, w=w: _child(cfg, run_tool, verifiers, [s[w] for s in shares],
                                                                    per, cluster), **_VERIFY) for w in range(1, n)]
        for child in children:       # its share was fixed before the fork: nothing to hand over
            child.start({})

    async def parent(tc=None):
        own = tc.index if tc is not None else index or open_index(cfg)
        services = _services(cfg, tc)
        try:
            for v, s in zip(verifiers, shares):
                v.attach(own, tc, services, per)
                await v.check(s[0])
                await v.close()
            reports = await asyncio.get_running_loop().run_in_executor(None, lambda: [c.wait() for c in children]) \
                if children else []
            failed = [r["error"] for r in reports if "error" in r]
            if failed:
                raise state.MigrationError(f"a verify worker failed, so its share was not compared: {failed[0]}")
            for report in reports:
                for v, got in zip(verifiers, report["buckets"]):
                    v.findings += got["findings"]
                    v.headed, v.deep_read = v.headed + got["headed"], v.deep_read + got["deep_read"]
                    v.presigned += got["presigned"]
            out = [dict(await v.finish(fix), workers=n) for v in verifiers]
        finally:
            for v in verifiers:
                await v.close()
            if services is not None:
                await services.close()
            if tc is None:
                own.close()
        return {"buckets": out, "clean": all(b["clean"] for b in out)}
    return run_tool(cfg, parent, lazy_packs=True) if cluster else asyncio.run(parent())


def _child(cfg, run_tool, verifiers: list[Verifier], shares: list[list], per: int, cluster: bool) -> dict:
    """A forked worker: its share of each bucket checked, what it found (or why it failed)."""
    import asyncio

    async def work(tc=None):
        services = _services(cfg, tc)
        try:
            out = []
            for v, share in zip(verifiers, shares):
                v.client = settings.client_for(v.source, v.keys_file, per)   # not the parent's connections
                v.attach(tc and tc.index, tc, services, per)
                before = len(v.findings)
                await v.check(share)
                await v.close()
                out.append({"findings": v.findings[before:], "headed": v.headed, "deep_read": v.deep_read,
                            "presigned": v.presigned})
            return out
        finally:
            if services is not None:
                await services.close()
    try:
        return {"buckets": run_tool(cfg, work, lazy_packs=True) if cluster else asyncio.run(work())}
    except BaseException as e:
        log.exception("verify worker %d failed", os.getpid())
        return {"error": f"worker {os.getpid()}: {e!r}"[:500]}


def _share_imports(cluster: bool, small_reads: bool) -> None:
    """Import once, before forking, what every worker's checks import: the children then
    share those modules with the parent instead of each importing them again (aiohttp
    alone, for small objects' GETs, was ~0.1 s of CPU per process)."""
    from . import copier, presigned_get  # noqa: F401
    if cluster:
        from ..tools import cluster as _  # noqa: F401
        from . import deep, services  # noqa: F401
    if small_reads:
        import aiohttp  # noqa: F401


def _services(cfg, tc):
    if tc is None:
        return None
    from .services import ToolServices
    return ToolServices(cfg, tc)


def _cost(one: tuple) -> float:
    e, _, read = one
    return PER_VERSION + ((PER_READ + e.size * PER_BYTE) if read else 0.0)


def default_workers(verifiers: list[Verifier]) -> int:
    """One process per WORTH seconds of estimated work, one per core at most (4 at most)."""
    cores = forked.cores()
    work = sum(_cost(one) for v in verifiers for one in v.further)
    return max(1, min(cores, int(work / WORTH)))


def split(further: list[tuple], n: int) -> list[list[tuple]]:
    """`further` in `n` shares of about equal estimated work, the largest versions placed first."""
    shares: list[list[tuple]] = [[] for _ in range(n)]
    load = [0.0] * n
    for one in sorted(further, key=_cost, reverse=True):
        w = load.index(min(load))
        shares[w].append(one)
        load[w] += _cost(one)
    return shares
