"""Repair and scrub benchmark on a real 6-node EC 4+2 cluster (one command):

    python -m bench.repair [--size-gib 2] [--repair-rate 0] [--root DIR] [--keep] [--markdown]

1. Starts 6 node processes (one disk each) and a gateway on 127.0.0.1, background scrub
   and repair off, and loads `--size-gib` of mixed sizes (by bytes: 5 % small objects of
   4-100 KiB in packs, 15 % 1 MiB, 30 % 8 MiB, 50 % 64 MiB).
2. Scrub throughput two ways: `pocket scrub` (every node checks its own disk, the
   gateway collects findings) and the old way, every archive read over the node API and
   checked in one process (verify.py through RemoteDisk, as the gateway used to).
3. Disk loss: kills node n1, wipes its disk folder, starts it again with --init (an empty
   replacement with the same id), then `pocket scrub` (finds the missing fragments) and
   `pocket repair`, and a last `pocket scrub` that must find nothing missing. Time to full
   redundancy is scrub + repair; MiB/s rebuilt is the repair's bytes written / seconds.
   The repair's CPU is given split (the command, n1, the other nodes) and once more
   without the command's start-up, measured as a `pocket repair` of the empty queue.

Prints one line per step and a summary (`--markdown`: a table row for bench/RESULTS.md).
Every archive is fsync'd, so this is disk-bound as much as CPU-bound: compare runs on
the same machine only.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import aiohttp

from storage.node.client import RemoteDisk
from storage.throttle import Throttle
from storage.verify import verify_archive
from tests.cluster.harness import ACCESS_KEY, CLUSTER_SECRET, REPO, SECRET_KEY, ProcCluster

from .s3client import S3, SigV4, chunks
from .proc_cpu import cpu_seconds

MIB = 1 << 20
MIX = [(0.05, None), (0.15, MIB), (0.30, 8 * MIB), (0.50, 64 * MIB)]   # share of bytes, object size


def plan(total: int) -> list[int]:
    """Object sizes adding up to about `total` bytes in the mix above."""
    sizes = []
    for share, size in MIX:
        budget = int(total * share)
        i = 0
        while budget > 0:
            s = size or (4096 + (i * 7919) % (96 * 1024))
            sizes.append(min(s, budget) if size is None else s)
            budget -= s
            i += 1
    return sizes


async def load(endpoint: str, sizes: list[int], concurrency: int = 8) -> float:
    block = memoryview(os.urandom(max(sizes) + 997))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        s3 = S3(endpoint, SigV4(ACCESS_KEY, SECRET_KEY), session)
        status, _, text = await s3.request("PUT", "/bench")
        assert status == 200, text
        sem = asyncio.Semaphore(concurrency)

        async def put(i: int, size: int):
            async with sem:
                status, _, text = await s3.request("PUT", f"/bench/o{i:06d}", data=chunks(block[i % 997:i % 997 + size]),
                                                   extra={"Content-Length": str(size)})
                assert status == 200, text
        started = time.perf_counter()
        await asyncio.gather(*(put(i, s) for i, s in enumerate(sizes)))
        return time.perf_counter() - started


async def network_scrub(c: ProcCluster) -> tuple[int, float, int]:
    """The old gateway scrub's verification: every archive read over HTTP and checked here."""
    async with aiohttp.ClientSession() as session:
        disks = [RemoteDisk(f"{n}d1", f"http://127.0.0.1:{c.node_ports[n]}", CLUSTER_SECRET, session, node_id=n)
                 for n in c.node_ids]
        throttle = Throttle(0)
        started = time.perf_counter()
        bad = 0

        async def walk(disk):
            nonlocal bad
            async for name, size in disk.iter_archives():
                verdict = await verify_archive(disk, name, size, throttle)
                bad += verdict.problem is not None
        await asyncio.gather(*(walk(d) for d in disks))
        return throttle.bytes, time.perf_counter() - started, bad


def pocket(c: ProcCluster, *args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cli", *args, "--json", "--config", c.config], cwd=REPO,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode not in (0, 1):
        raise SystemExit(f"pocket {' '.join(args)} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout), seconds


def say(msg: str) -> None:
    print(msg, flush=True)


def measure(size_gib: float, root: str, repair_rate: int = 0, network_scrub_too: bool = True) -> dict:
    """Steps 1-3 on a cluster in `root`; the figures (MiB/s, seconds, CPU) as a dict.

    The repair's CPU is the `pocket repair` process's plus every node process's while it
    runs (they read the surviving fragments and write the rebuilt ones), so `per core` is
    MiB/s rebuilt per CPU second, the figure issue 14 sets a target on."""
    c = ProcCluster(os.path.join(root, "cluster"), sections={"scrub": {"enabled": False, "rate": 0},
                                                             "repair": {"enabled": False}})
    r: dict = {}
    try:
        c.start()
        sizes = plan(int(size_gib * (1 << 30)))
        total = sum(sizes)
        say(f"cluster: 6 node processes, EC 4+2, in {root}")
        secs = asyncio.run(load(c.endpoint, sizes))
        say(f"load: {len(sizes)} objects, {total / MIB:.0f} MiB in {secs:.1f}s ({total / MIB / secs:.1f} MiB/s)")
        r.update(objects=len(sizes), mib=total / MIB)

        report, secs = pocket(c, "scrub", "--rate", "0")
        assert not report["corrupt"] and not report["missing"], "a fresh cluster should scrub clean"
        r["scrub_node"] = report["bytes_verified"] / MIB / secs
        say(f"scrub on the nodes (pocket scrub): {report['bytes_verified'] / MIB:.0f} MiB of "
            f"{report['archives']} archives in {secs:.1f}s = {r['scrub_node']:.1f} MiB/s")
        if network_scrub_too:
            checked, secs, bad = asyncio.run(network_scrub(c))
            assert bad == 0
            r["scrub_net"] = checked / MIB / secs
            say(f"scrub over the network (old design): {checked / MIB:.0f} MiB in {secs:.1f}s = "
                f"{r['scrub_net']:.1f} MiB/s")

        lost = c.node_ids[0]
        c.signal(lost, signal.SIGKILL)
        c.procs.pop(lost)
        shutil.rmtree(c.disk_paths[f"{lost}d1"])
        c.start_node(lost)
        say(f"disk loss: killed {lost}, wiped {lost}d1, started it again empty (--init)")
        started = time.perf_counter()
        report, scrub_secs = pocket(c, "scrub")
        say(f"scrub: {len(report['missing'])} fragments missing, {report['queued']} objects queued "
            f"in {scrub_secs:.1f}s")
        rate = ["--rate", str(repair_rate)] if repair_rate else []
        cpu_before, faults_before = _cpu_split(c, lost), _child_faults()
        fixed, repair_secs = pocket(c, "repair", *rate)
        split = [after - before for after, before in zip(_cpu_split(c, lost), cpu_before)]
        r["repair_faults"] = _child_faults() - faults_before
        r["repair_cpu"] = sum(split)
        r["repair_cpu_split"] = dict(zip(("command", "lost_node", "other_nodes"), split))
        to_full = time.perf_counter() - started
        r.update(missing=len(report["missing"]), rebuilt=fixed["bytes_written"] / MIB,
                 repair_secs=fixed["seconds"], to_full=to_full)
        r["repair_mibs"] = r["rebuilt"] / max(fixed["seconds"], 1e-9)
        r["repair_mibs_per_core"] = r["rebuilt"] / max(r["repair_cpu"], 1e-9)
        say(f"repair: {fixed['fragments']} fragments, {r['rebuilt']:.0f} MiB rebuilt in {fixed['seconds']:.1f}s "
            f"= {r['repair_mibs']:.1f} MiB/s using {r['repair_cpu']:.1f} CPU s "
            f"({r['repair_mibs_per_core']:.0f} MiB/s per core); {fixed['remaining']} still queued")
        final, _ = pocket(c, "scrub")
        assert not final["missing"] and not final["corrupt"] and fixed["remaining"] == 0, \
            "redundancy is not whole after repair"
        say(f"full redundancy {to_full:.1f}s after the disk came back (scrub + repair); final scrub clean")
        before = _cpu_split(c, lost)
        pocket(c, "repair")   # the queue is empty: what the command costs before it rebuilds anything
        r["startup_cpu"] = sum(after - b for after, b in zip(_cpu_split(c, lost), before))
        r["repair_mibs_per_core_after_startup"] = r["rebuilt"] / max(r["repair_cpu"] - r["startup_cpu"], 1e-9)
        say("repair CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in r["repair_cpu_split"].items())
            + f" (the command's minor page faults: {r['repair_faults']:,}); an empty queue's repair {r['startup_cpu']:.2f} (start-up), so "
            f"{r['repair_mibs_per_core_after_startup']:.0f} MiB/s per core after start-up")
    finally:
        c.close()
    return r


def _cpu_split(c: ProcCluster, lost: str) -> tuple[float, float, float]:
    """CPU seconds so far of finished child commands (`pocket repair`), of the node that
    lost its disk, and of the other nodes: where a repair's CPU goes, not only its sum."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    nodes = {n: cpu_seconds(p.pid) for n, p in c.procs.items() if n != "gateway"}
    return (children.ru_utime + children.ru_stime, nodes.pop(lost, 0.0), sum(nodes.values()))


def _child_faults() -> int:
    """Minor page faults of finished child commands: a repair's fresh buffers show here
    (each one's pages zeroed by the kernel) before they show in its CPU."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=2.0, help="object bytes to load (default 2)")
    ap.add_argument("--repair-rate", type=int, default=0, help="repair.rate for the repair, bytes/s (0: unlimited)")
    ap.add_argument("--root", default=None, help="cluster folder (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="leave the cluster folder behind")
    ap.add_argument("--markdown", action="store_true", help="also print a table row for bench/RESULTS.md")
    args = ap.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="pocket-bench-repair-")
    try:
        r = measure(args.size_gib, root, args.repair_rate)
    finally:
        if not args.keep and not args.root:
            shutil.rmtree(root, ignore_errors=True)
    say(f"\nsummary: {r['mib']:.0f} MiB in {r['objects']} objects; scrub {r['scrub_node']:.0f} MiB/s on the "
        f"nodes vs {r['scrub_net']:.0f} MiB/s over the network; lost disk rebuilt ({r['rebuilt']:.0f} MiB) at "
        f"{r['repair_mibs']:.1f} MiB/s ({r['repair_mibs_per_core']:.0f} MiB/s per core used), "
        f"full redundancy in {r['to_full']:.0f}s")
    if args.markdown:
        say(f"\n| {time.strftime('%Y-%m-%d')} | {os.cpu_count()} cores, {platform.machine()} | "
            f"{r['mib'] / 1024:.1f} GiB / {r['objects']} | {r['scrub_node']:.0f} | {r['scrub_net']:.0f} | "
            f"{r['missing']} | {r['rebuilt']:.0f} MiB | {r['repair_mibs']:.1f} | {r['to_full']:.0f} s |")


if __name__ == "__main__":
    main()
