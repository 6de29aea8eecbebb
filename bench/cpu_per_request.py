"""Gateway CPU milliseconds per request, per small-object scenario.

Why it exists: on a box shared with other work, ops/s measures the neighbours as much as
the server; the CPU seconds the server's processes spend per request do not depend on
how long they waited for a core. This reads utime + stime from /proc/PID/stat for the
gateway and every process below it (workers, node processes), before and after each
timed loop; fixtures are created outside the measured window.

    python -m bench.cpu_per_request --endpoint http://127.0.0.1:9000 --access-key AK \\
        --secret-key SK --pid $(pgrep -of 'pocket up') --duration 5
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

import aiohttp

from bench import load, s3client
from bench.proc_cpu import TICKS, stat_fields

SCENARIOS = ("put-4k-c1", "put-4k-c16", "get-4k-c16", "delete-c16", "list-10k")


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from one pass over /proc."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(name)
            if fields:
                tree.setdefault(int(fields[1]), []).append(int(name))
    return tree


def cpu_seconds(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `root` and all its live descendants (children that
    exited count through their parent's cutime/cstime once reaped, so those are added too)."""
    tree, user, system, todo = _children(), 0.0, 0.0, [root]
    while todo:
        pid = todo.pop()
        fields = stat_fields(pid)
        if not fields:
            continue
        user += (int(fields[11]) + int(fields[13])) / TICKS     # utime + cutime
        system += (int(fields[12]) + int(fields[14])) / TICKS   # stime + cstime
        todo.extend(tree.get(pid, ()))
    return user, system


async def measure(pid: int, ops_fn) -> tuple[int, tuple[float, float]]:
    """Run `ops_fn()` (returns successful requests) and the (user, system) CPU the server spent on it."""
    u0, s0 = cpu_seconds(pid)
    ops = await ops_fn()
    u1, s1 = cpu_seconds(pid)
    return ops, (u1 - u0, s1 - s0)


async def scenario(bench: load.Bench, name: str, duration: float, pid: int) -> tuple[int, tuple, int]:
    """(requests, server (user, system) CPU seconds, errors) for one scenario."""
    s3, bucket = bench.s3, bench.bucket
    if name.startswith("put-4k-c"):
        res = None

        async def run():
            nonlocal res
            res = await bench.put(name, load.SMALL, int(name.rsplit("c", 1)[1]))
            return res.ops
        ops, cpu = await measure(pid, run)
        return ops, cpu, res.errors
    if name == "get-4k-c16":
        await bench.ensure_objects(f"{load.PREFIX}/get-4k", load.GET_POOL["4k"], load.SMALL)
        res = None

        async def run():
            nonlocal res
            res = await bench.get(name, "4k", 16)
            return res.ops
        ops, cpu = await measure(pid, run)
        return ops, cpu, res.errors  # includes one 64-key LIST: negligible
    if name == "delete-c16":
        keys = [f"{load.PREFIX}/{name}/{bench.run_id}-{i:07d}" for i in range(int(600 * duration))]
        body = bench.body(load.SMALL)
        await load.for_each(keys, load.FILL_CONCURRENCY, lambda k: s3.put(bucket, k, body))
        it, errors = iter(keys), 0

        async def run():
            done = 0

            async def worker() -> None:
                nonlocal done, errors
                for key in it:
                    status, _, _ = await s3.request("DELETE", f"/{bucket}/{key}")
                    done, errors = (done + 1, errors) if status < 300 else (done, errors + 1)
            await asyncio.gather(*(worker() for _ in range(16)))
            return done
        ops, cpu = await measure(pid, run)
        return ops, cpu, errors
    if name == "list-10k":
        prefix = f"{load.PREFIX}/list-10k"
        await bench.ensure_objects(prefix, load.LIST_KEYS, load.SMALL)
        walks = max(1, int(duration))

        async def run():
            pages = 0
            for _ in range(walks):
                lat: list[float] = []
                found = await s3.list_objects(bucket, prefix + "/", lat)
                if len(found) != load.LIST_KEYS:
                    raise SystemExit(f"listed {len(found)} keys, expected {load.LIST_KEYS}")
                pages += len(lat)
            return pages
        ops, cpu = await measure(pid, run)
        return ops, cpu, 0
    raise SystemExit(f"unknown scenario {name}")


async def main_async(args) -> list[tuple[str, int, float, int]]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        s3 = load.S3(args.endpoint, load.SigV4(args.access_key, args.secret_key, args.region), session)
        s3.errors_shown = s3client.MAX_ERROR_BODIES  # "you already own it" on a rerun is not news
        await s3.ensure_bucket(args.bucket)
        s3.errors_shown = 0
        bench = load.Bench(s3, args.bucket, args.duration)
        rows = []
        for name in args.scenarios.split(","):
            ops, cpu, errors = await scenario(bench, name.strip(), args.duration, args.pid)
            unit = "page (1,000 keys)" if name == "list-10k" else "request"
            per = 1000 / max(ops, 1)
            print(f"{name}: {ops} ops, {errors} errors, server CPU {sum(cpu):.2f} s, "
                  f"{per * sum(cpu):.3f} ms per {unit} (user {per * cpu[0]:.3f}, system {per * cpu[1]:.3f})",
                  flush=True)
            rows.append((name, ops, cpu, errors))
        return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_per_request", description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--bucket", default="pocket-cpu")
    p.add_argument("--pid", type=int, required=True, help="the gateway (or `pocket up`) process")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = p.parse_args(argv)
    rows = asyncio.run(main_async(args))
    return 1 if any(r[3] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
