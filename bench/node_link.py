"""CPU per request of the node link, each end apart (one command):

    python -m bench.node_link [--requests 2000]

Starts one real node process (as `pocket up --nodes 6` does, through the cluster test
harness), stores ten small archives on it, then with a RemoteDisk in this process sends
`--requests` requests of each kind, one at a time and 16 at once: a stat, a whole read
of a 4 KiB-object's archive (what a small GET asks), a record write (a batch, what a
small PUT or DELETE sends) and a health check. Reports the CPU microseconds per request
of this process (the gateway's side) and of the node (user + system from /proc), and
the wall time. On a shared box compare the CPU figures between commits, not the wall.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time

import aiohttp

from storage import layout
from storage.node import fetch
from storage.node.client import RemoteDisk, node_session
from tests.cluster.harness import CLUSTER_SECRET, ProcCluster
from tests.unit.test_store import make_archive

from .proc_cpu import cpu_seconds, tree


async def _once(data: bytes):
    yield data


async def measure(cluster: ProcCluster, requests: int) -> list[str]:
    async with node_session() as session:   # the gateway's
        return await _measure(cluster, requests, session)


async def _measure(cluster: ProcCluster, requests: int, session: aiohttp.ClientSession) -> list[str]:
    node = cluster.node_ids[0]
    pid = cluster.procs[node].pid
    disk = RemoteDisk(f"{node}d1", f"http://127.0.0.1:{cluster.node_ports[node]}", CLUSTER_SECRET, session,
                      node_id=node)
    names = [layout.archive_name(f"{i:032x}", 0) for i in range(10)]
    for i, name in enumerate(names):   # a 4 KiB object as `pocket up` stores it: replicated, one archive each
        archive, _ = make_archive(vid=f"{i:032x}", size=4096, segment_size=65536, k=1, m=2, seed=i)
        await disk.put_archive(name, _once(archive))
    kinds = {"stat": lambda i: disk.stat(names[i % 10]),
             "read 4 KiB": lambda i: disk.read(names[i % 10], 0, fetch.WHOLE),
             "record": lambda i: disk.put_record(f"{i % 20 + 1000:032x}", b"r" * 300),
             "health": lambda i: disk.health()}
    lines = []
    for conc in (1, 16):
        for label, op in kinds.items():
            work = iter(range(requests))

            async def worker():
                for i in work:
                    await op(i)
            mine, theirs, wall = time.process_time(), sum(map(cpu_seconds, tree(pid))), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conc)))
            wall = time.perf_counter() - wall
            mine, theirs = time.process_time() - mine, sum(map(cpu_seconds, tree(pid))) - theirs
            lines.append(f"{label:<11} c{conc:<3} gateway side {1e6 * mine / requests:5.0f} us   "
                         f"node {1e6 * theirs / requests:5.0f} us   wall {1e6 * wall / requests:6.0f} us per request")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000, help="requests of each kind at each concurrency")
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="pocket-bench-link-")
    # the config a node checks names six disks; only the first node is started
    cluster = ProcCluster(root, nodes=6, sections={"scrub": {"enabled": False}, "repair": {"enabled": False}})
    try:
        cluster.start_node(cluster.node_ids[0])
        for line in asyncio.run(measure(cluster, args.requests)):
            print(line)
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
