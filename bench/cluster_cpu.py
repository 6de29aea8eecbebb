"""CPU cost of large PUTs and GETs through real processes, per shape (one command):

    python -m bench.cluster_cpu [--shape embedded|nodes|both] [--size-mib 64] [--objects 4]

Starts a cluster on 127.0.0.1 (`embedded`: one gateway process owning six disks, as
`pocket up`; `nodes`: a gateway and six node processes, as `pocket up --nodes 6`), then
with the lean client of bench/load.py: PUT `--objects` objects of `--size-mib` one
after the other, GET each, then GET each again with two disks of EC 4+2 down (two node
processes killed, or, embedded, two disk folders renamed away and the gateway told by
its first failed reads).

Reports the CPU seconds per GiB that each kind of process used (user + system from
/proc, all threads), and the wall MiB/s. On a loaded box compare the CPU figures
between commits; wall time is only meaningful on a quiet one.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import tempfile
import time

import aiohttp

from tests.cluster.harness import ACCESS_KEY, SECRET_KEY, ProcCluster

from .load import S3, SigV4
from .proc_cpu import cpu_seconds, tree

MIB = 1 << 20


class Phase:
    def __init__(self, name: str, cluster: ProcCluster):
        self.name, self.cluster, self.bytes = name, cluster, 0

    def __enter__(self):
        self.start = self._cpu()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        end = self._cpu()
        self.cpu = {kind: end[kind] - self.start.get(kind, 0.0) for kind in end}

    def _cpu(self) -> dict[str, float]:
        out = {"gateway": 0.0, "nodes": 0.0}
        for name, proc in self.cluster.procs.items():
            if proc.poll() is None:
                # a gateway's CPU is its workers' (and disk owner's): count every process below it
                out["gateway" if name == "gateway" else "nodes"] += sum(map(cpu_seconds, tree(proc.pid)))
        return out

    def line(self) -> str:
        gib = self.bytes / (1 << 30)
        cpu = "  ".join(f"{kind} {sec / gib:5.2f}" for kind, sec in self.cpu.items() if sec or kind == "gateway")
        return f"{self.name:<14} CPU s/GiB: {cpu}   {self.bytes / MIB / self.wall:7.1f} MiB/s wall"


async def run(cluster: ProcCluster, size: int, objects: int) -> list[Phase]:
    signer = SigV4(ACCESS_KEY, SECRET_KEY)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        s3 = S3(cluster.endpoint, signer, session)
        await s3.ensure_bucket("bench")
        bodies = [random.Random(n).randbytes(size) for n in range(objects)]
        phases = []
        with Phase("PUT", cluster) as p:
            for n, body in enumerate(bodies):
                assert await s3.put("bench", f"o{n}", body)
                p.bytes += size
        phases.append(p)

        async def get_all(name: str) -> Phase:
            with Phase(name, cluster) as p:
                for n in range(objects):
                    status, got, _ = await s3.request("GET", f"/bench/o{n}", sink=True)
                    assert status == 200 and got == size, (status, got)
                    p.bytes += got
            return p
        phases.append(await get_all("GET"))
        take_two_disks_down(cluster)
        phases.append(await get_all("GET degraded"))
        return phases


def take_two_disks_down(cluster: ProcCluster) -> None:
    if cluster.embedded:
        for disk_id in list(cluster.disk_paths)[:2]:
            shutil.move(cluster.disk_paths[disk_id], cluster.disk_paths[disk_id] + ".gone")
    else:
        for node in cluster.node_ids[:2]:
            cluster.signal(node, signal.SIGKILL)
            del cluster.procs[node]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=("embedded", "nodes", "both"), default="both")
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--objects", type=int, default=4)
    args = p.parse_args()
    shapes = ("embedded", "nodes") if args.shape == "both" else (args.shape,)
    for shape in shapes:
        root = tempfile.mkdtemp(prefix=f"pocket-bench-{shape}-")
        cluster = ProcCluster(root, nodes=6, embedded=shape == "embedded",
                              sections={"scrub": {"enabled": False}, "repair": {"enabled": False}},
                              workers=0)   # the config's default, as `pocket up` runs
        try:
            cluster.start()
            phases = asyncio.run(run(cluster, args.size_mib * MIB, args.objects))
        finally:
            cluster.close()
            shutil.rmtree(root, ignore_errors=True)
        print(f"{shape}: {args.objects} x {args.size_mib} MiB, EC 4+2")
        for ph in phases:
            print("  " + ph.line())


if __name__ == "__main__":
    main()
