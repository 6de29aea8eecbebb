"""Lean S3 load generator for Pocket.

Why it exists: boto3 spends more CPU per request than a small S3 server spends serving
it, so a boto3-driven benchmark measures the client. This one keeps the client cheap:
one aiohttp session with an unbounded connection pool, the lean signer and client of
bench/s3client.py, and request bodies that are random bytes generated once.

Timed scenarios are closed loops: each of c workers issues its next request as soon as
the previous one completes, for --duration seconds. Objects a scenario reads or deletes
are created beforehand and are not part of the timing.

    python -m bench.load --endpoint http://127.0.0.1:9000 --access-key AK \\
        --secret-key SK --duration 10 --scenarios all --markdown --json out.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import aiohttp

from .s3client import KIB, MIB, S3, SigV4

SIZES = {"4k": 4 * KIB, "1m": MIB, "64m": 64 * MIB}
GET_POOL = {"4k": 64, "1m": 64, "64m": 4}  # objects GET scenarios cycle through
CONCURRENCIES = (1, 16)
LIST_KEYS = 10_000
FILL_CONCURRENCY = 32  # for creating fixtures, which are not timed
FIXTURE_TRIES = 3
SMALL = 4 * KIB  # body of list/delete fixture objects
PREFIX = "bench"


class Exhausted(Exception):
    """A worker ran out of work before the deadline (delete scenarios)."""


@dataclass
class Result:
    scenario: str
    ops: int = 0
    errors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    lat: list[float] = field(default_factory=list, repr=False)
    notes: str = ""
    server_cpu: float | None = None   # CPU seconds of the server's processes while timed (with a meter)
    client_cpu: float | None = None   # ...and of this client

    def metered(self, meter, before: tuple[float, float] | None) -> None:
        if meter is not None and before is not None:
            after = meter.read()
            self.server_cpu, self.client_cpu = after[0] - before[0], after[1] - before[1]

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of successful request latencies, in ms."""
        if not self.lat:
            return 0.0
        ordered = sorted(self.lat)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] * 1000

    def summary(self) -> dict:
        secs = self.seconds or float("nan")
        return {"scenario": self.scenario, "ops": self.ops, "errors": self.errors, "bytes": self.bytes,
                "seconds": round(self.seconds, 3), "ops_per_s": round(self.ops / secs, 1),
                "mib_per_s": round(self.bytes / MIB / secs, 1), "p50_ms": round(self.percentile(50), 2),
                "p99_ms": round(self.percentile(99), 2), "notes": self.notes,
                **({"server_cpu_ms_per_op": round(self.server_cpu * 1000 / self.ops, 3),
                    "client_cpu_ms_per_op": round(self.client_cpu * 1000 / self.ops, 3)}
                   if self.server_cpu is not None and self.ops else {})}


async def closed_loop(s3: S3, name: str, conc: int, duration: float, op, meter=None) -> Result:
    """Run `op(worker, seq)` back to back in `conc` workers until the deadline.

    `op` returns the payload bytes moved, or None on a failed (already reported) request.
    Elapsed time runs to the end of the last in-flight request, so slow large requests
    finishing after the deadline are still accounted for correctly."""
    res = Result(name)
    before = meter.read() if meter else None
    start = time.perf_counter()
    deadline = start + duration

    async def worker(w: int) -> None:
        seq = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                moved = await op(w, seq)
            except Exhausted:
                res.notes = "ran out of pre-created keys"
                return
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                s3.report(f"{name}: {type(exc).__name__}: {exc}")
                moved = None
            seq += 1
            if moved is None:
                res.errors += 1
            else:
                res.lat.append(time.perf_counter() - t0)
                res.ops += 1
                res.bytes += moved

    await asyncio.gather(*(worker(w) for w in range(conc)))
    res.seconds = time.perf_counter() - start
    res.metered(meter, before)
    return res


async def for_each(items, conc: int, fn) -> None:
    """Apply async `fn` to every item with `conc` workers sharing one iterator."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await fn(item)

    await asyncio.gather(*(worker() for _ in range(conc)))


class Bench:
    """Scenario implementations; fixtures are created untimed before each timed run."""

    def __init__(self, s3: S3, bucket: str, duration: float, meter=None):
        """`meter` (bench.proc_cpu.CpuMeter): also measure CPU per request while timed."""
        self.s3, self.bucket, self.duration, self.meter = s3, bucket, duration, meter
        self.payload = os.urandom(max(SIZES.values()))  # generated once, sliced per size
        self.run_id = f"{int(time.time()):x}"  # keeps PUT keys of separate runs apart

    def body(self, size: int) -> bytes:
        return self.payload[:size]  # a full-length slice is the same object, not a copy

    async def ensure_objects(self, prefix: str, count: int, size: int) -> list[str]:
        """Make sure `prefix/obj-NNNNNN` for N < count exist with `size` bytes; upload only what is missing."""
        keys = [f"{prefix}/obj-{i:06d}" for i in range(count)]
        try:
            have = await self.s3.list_objects(self.bucket, prefix + "/")
        except RuntimeError:  # already reported; fall back to uploading everything
            have = {}
        missing = [k for k in keys if have.get(k) != size]
        body = self.body(size)

        async def upload(key: str) -> None:
            for attempt in range(FIXTURE_TRIES):   # a 503 SlowDown is retried, as SDKs do
                if await self.s3.put(self.bucket, key, body):
                    return
                await asyncio.sleep(0.5 * (attempt + 1))
            raise SystemExit(f"fixture upload of {key} failed {FIXTURE_TRIES} times")

        await for_each(missing, FILL_CONCURRENCY if size <= MIB else 4, upload)
        return keys

    async def put(self, name: str, size: int, conc: int) -> Result:
        body = self.body(size)

        async def op(w: int, seq: int) -> int | None:
            key = f"{PREFIX}/{name}/{self.run_id}-w{w:02d}-{seq:07d}"
            return size if await self.s3.put(self.bucket, key, body) else None

        return await closed_loop(self.s3, name, conc, self.duration, op, self.meter)

    async def get(self, name: str, label: str, conc: int) -> Result:
        size = SIZES[label]
        keys = await self.ensure_objects(f"{PREFIX}/get-{label}", GET_POOL[label], size)

        async def op(w: int, seq: int) -> int | None:
            key = keys[(w + seq * conc) % len(keys)]
            status, n, _ = await self.s3.request("GET", f"/{self.bucket}/{key}", sink=True)
            if status >= 300:
                return None
            if n != size:
                self.s3.report(f"{name}: GET {key} returned {n} bytes, expected {size}")
                return None
            return n

        return await closed_loop(self.s3, name, conc, self.duration, op, self.meter)

    async def list_10k(self, name: str) -> Result:
        """One full ListObjectsV2 walk over 10,000 keys; ops are pages, seconds is the walk."""
        prefix = f"{PREFIX}/list-10k"
        await self.ensure_objects(prefix, LIST_KEYS, SMALL)
        res = Result(name)
        before = self.meter.read() if self.meter else None
        t0 = time.perf_counter()
        try:
            found = await self.s3.list_objects(self.bucket, prefix + "/", res.lat)
        except RuntimeError:
            found = {}
        res.seconds = time.perf_counter() - t0
        res.metered(self.meter, before)
        res.ops = len(res.lat)
        if len(found) != LIST_KEYS:
            res.errors += 1
            self.s3.report(f"{name}: listed {len(found)} keys, expected {LIST_KEYS}")
        res.notes = f"{len(found)} keys in {res.seconds:.3f} s"
        return res

    async def delete(self, name: str, conc: int) -> Result:
        """Fill for --duration seconds at concurrency 32 (untimed), then delete those keys.

        Filling for as long as the timed run lasts gives a server whose deletes are no
        more than ~2x faster than its PUTs enough keys; if they run out, the run stops
        early and says so, and ops/s over the shorter elapsed time is still valid."""
        keys: list[str] = []
        body = self.body(SMALL)

        async def fill(w: int, seq: int) -> int | None:
            key = f"{PREFIX}/{name}/{self.run_id}-w{w:02d}-{seq:07d}"
            if not await self.s3.put(self.bucket, key, body):
                return None
            keys.append(key)
            return SMALL

        filled = await closed_loop(self.s3, f"{name} (fill)", FILL_CONCURRENCY, self.duration, fill)
        it = iter(keys)

        async def op(w: int, seq: int) -> int | None:
            key = next(it, None)
            if key is None:
                raise Exhausted
            status, _, _ = await self.s3.request("DELETE", f"/{self.bucket}/{key}")
            return 0 if 200 <= status < 300 else None

        res = await closed_loop(self.s3, name, conc, self.duration, op, self.meter)
        res.errors += filled.errors
        return res

    async def run(self, name: str) -> Result:
        parts = name.split("-")
        if parts[0] in ("put", "get"):
            conc = int(parts[2][1:])
            if parts[0] == "put":
                return await self.put(name, SIZES[parts[1]], conc)
            return await self.get(name, parts[1], conc)
        if name == "list-10k":
            return await self.list_10k(name)
        return await self.delete(name, int(parts[1][1:]))


SCENARIOS = ([f"{op}-{label}-c{c}" for op in ("put", "get") for label in SIZES for c in CONCURRENCIES]
             + ["list-10k"] + [f"delete-c{c}" for c in CONCURRENCIES])


def markdown(rows: list[dict]) -> str:
    lines = ["| scenario | ops/s | MiB/s | p50 ms | p99 ms | errors | notes |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    lines += [f"| {r['scenario']} | {r['ops_per_s']} | {r['mib_per_s']} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['errors']} | {r['notes']} |" for r in rows]
    return "\n".join(lines)


async def run_scenarios(endpoint: str, access_key: str, secret_key: str, names: list[str], duration: float,
                        bucket: str = "pocket-bench", region: str = "us-east-1", label: str = "",
                        meter=None) -> list[dict]:
    """Run the scenarios `names` one after the other against one server; a summary row each
    (also printed to stderr as it completes, prefixed with `label`); with `meter`, the
    server's and the client's CPU per request too."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                     read_bufsize=1 << 20) as session:
        s3 = S3(endpoint, SigV4(access_key, secret_key, region), session)
        await s3.ensure_bucket(bucket)
        bench = Bench(s3, bucket, duration, meter)
        rows = []
        for name in names:
            row = (await bench.run(name)).summary()
            print(f"{label}{name}: {row['ops_per_s']} ops/s, {row['mib_per_s']} MiB/s, p50 {row['p50_ms']} ms, "
                  f"p99 {row['p99_ms']} ms, {row['errors']} errors {row['notes']}", file=sys.stderr)
            rows.append(row)
        return rows


async def main_async(args: argparse.Namespace, names: list[str]) -> list[dict]:
    return await run_scenarios(args.endpoint, args.access_key, args.secret_key, names, args.duration,
                               args.bucket, args.region)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:9000; several gateways comma-separated")
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--bucket", default="pocket-bench")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per timed scenario")
    p.add_argument("--scenarios", default="all", help=f"comma-separated, or 'all': {','.join(SCENARIOS)}")
    p.add_argument("--json", metavar="FILE", help="write results as JSON")
    p.add_argument("--markdown", action="store_true", help="print a markdown table to stdout")
    args = p.parse_args(argv)
    names = SCENARIOS if args.scenarios == "all" else [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    rows = asyncio.run(main_async(args, names))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"endpoint": args.endpoint, "duration": args.duration, "results": rows}, f, indent=2)
    if args.markdown:
        print(markdown(rows))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
