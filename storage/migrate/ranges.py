"""A bucket cut into the key ranges that copy workers lease (index/migrations.py keeps them).

Ranges are cut once, from the inventory or, without one, from a listing of the source's
first keys. They are what spreads a bucket over workers, so they are cut by bytes as well
as by keys: ~100 keys to ~10,000 (each range is listed on its own: a page of up to 1,000
keys for a range of 10 would be mostly thrown away) make a range of small objects, while
a few large objects hold a range's worth of work by themselves. Cut by keys alone, a
bucket of 8 x 128 MiB was one range, which one process copied while the other workers
found nothing to lease and the second core sat idle (bench/RESULTS.md, Session 12).

Each range keeps what the cut saw (`planned`: keys, bytes), so a later pass can tell a
bucket of large objects from one of small ones without listing the source again.
"""
from __future__ import annotations

import asyncio
import math
import time

from ..index import migrations as M
from . import inventory, listing, state

MIN_RANGE = 100
MAX_RANGE = 10_000
RANGES = 256                  # about this many ranges for a large bucket
RANGE_BYTES = 32 << 20        # a range of at least this many bytes needs no more keys
LISTED_FOR_RANGES = 100_000   # keys listed to cut ranges when there is no inventory (100 list requests)


def range_bounds(keys: list[str], per_range: int | None = None,
                 sizes: dict[str, int] | None = None) -> list[tuple[str, str | None]]:
    """[(start_after, end)] covering every key, about RANGES of them, each closed after
    MIN_RANGE to MAX_RANGE keys (`per_range` exactly), or once its keys hold RANGE_BYTES
    (or 1/RANGES of all `sizes`) bytes.

    Keys compare as S3 lists them (UTF-8 bytes); the last range is open-ended."""
    return [(s, e) for s, e, _, _ in _cut(keys, per_range, sizes or {})]


def _cut(keys: list[str], per_range: int | None, sizes: dict[str, int]) -> list[tuple[str, str | None, int, int]]:
    """(start_after, end, keys, bytes) of each range."""
    keys = sorted(set(keys), key=lambda k: k.encode())
    most = per_range or min(MAX_RANGE, max(MIN_RANGE, math.ceil(len(keys) / RANGES)))
    heavy = max(RANGE_BYTES, math.ceil(sum(sizes.values()) / RANGES))
    out, start, n, held = [], "", 0, 0
    for i, key in enumerate(keys):
        n, held = n + 1, held + sizes.get(key, 0)
        if (n >= most or held >= heavy) and i < len(keys) - 1:
            out.append((start, key, n, held))
            start, n, held = key, 0, 0
    out.append((start, None, n, held))
    return out


async def plan(cfg, index, bucket: str, client, source_bucket: str) -> tuple[int, int]:
    """Cut the bucket into ranges once and start a pass; returns (the inventory's bytes, the
    bytes earlier passes copied when this one resumes them), for the ETA.

    Without an inventory (no `plan` first) the ranges come from a listing of the
    source's first LISTED_FOR_RANGES keys, so that several workers still share the
    bucket; keys past them form the last, open-ended range."""
    sizes, total = {}, 0
    try:
        db = inventory.connect(cfg.data, create=False)
    except FileNotFoundError:
        db = None
    if db is not None:
        try:
            sizes = dict(db.execute("SELECT key, sum(size) FROM objects WHERE bucket=? GROUP BY key", (bucket,)))
            total = sum(sizes.values())
        finally:
            db.close()
    if not sizes and not _ranges(index, bucket):
        sizes, total = await asyncio.get_running_loop().run_in_executor(
            None, listing.first_keys, client, source_bucket, LISTED_FOR_RANGES)
    cut = _cut(list(sizes), None, sizes)

    def start_pass(ops) -> int:
        """Ranges are cut once; when the last pass finished them all, this run is a new
        pass over every range (what changed at the source since is copied again). The pass's
        start goes into the migration record: `status` measures the copy's rate from it,
        not from `enable` (idle days between passes are no part of the rate)."""
        ranges = M.set_ranges(ops, bucket, [(s, e) for s, e, _, _ in cut], [(n, b) for _, _, n, b in cut])
        fresh = bool(ranges) and all(r["done"] for r in ranges)
        if fresh:
            M.reset_ranges(ops, bucket)
        copied = sum(r.get("bytes", 0) for r in ranges)
        m = state.get(ops, bucket)
        if m is not None:
            m.counters["copy_pass"] = {"started": time.time(), "bytes_before": copied}
            state.put(ops, m)
        return 0 if fresh else copied
    return total, index.write(start_pass)


def mean_size(index, bucket: str) -> float:
    """Bytes per key of the bucket as its ranges were cut (0 when they do not say)."""
    planned = [r["planned"] for r in _ranges(index, bucket) if r.get("planned")]
    keys = sum(n for n, _ in planned)
    return sum(b for _, b in planned) / keys if keys else 0.0


def _ranges(index, bucket: str) -> list[dict]:
    with index.read() as ops:
        return M.ranges(ops, bucket)
