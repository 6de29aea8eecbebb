"""CPU cost of the large-object data path, in process (one command):

    python -m bench.pipeline [--size-mib 64] [--objects 4] [--segment-kib 1024] [--root DIR]

Six local disk folders (EC 4+2, archives fsync'd as in production), the object service
without an index, and for each object: a PUT fed in 64 KiB chunks as aiohttp delivers a
request body, a healthy GET, a degraded GET (m = 2 data disks of the volume down), and
a rebuild of one lost data fragment and one lost parity fragment (the repairer's path).

Reports CPU seconds per GiB of object (per GiB of rebuilt fragments for repair) of the
whole process, all threads included (`time.process_time`), and the wall time. On a
shared or loaded box CPU seconds are what to compare between commits; wall time says
how much of that CPU ran in parallel (cpu/wall > 1: more than one core busy).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time

from storage import layout
from storage.cluster import Cluster
from storage.durability.repair import Repairer
from storage.executor import io_executor
from storage.node.store import DiskStore
from storage.objects.policy import Policy
from storage.objects.service import ObjectService
from storage.placement.volumes import DiskInfo
from storage.s3.digests import BodyDigests

MIB = 1 << 20
CHUNK = 64 << 10


class Meter:
    """CPU and wall seconds and bytes of one kind of operation, summed over runs."""

    def __init__(self, name: str):
        self.name, self.cpu, self.wall, self.bytes = name, 0.0, 0.0, 0

    async def run(self, coro_fn, nbytes: int):
        cpu, wall = time.process_time(), time.perf_counter()
        result = await coro_fn()
        self.cpu += time.process_time() - cpu
        self.wall += time.perf_counter() - wall
        self.bytes += nbytes
        return result

    def line(self) -> str:
        gib = self.bytes / (1 << 30)
        return (f"{self.name:<14} {self.cpu / gib:6.2f} CPU s/GiB  {self.bytes / MIB / self.wall:8.1f} MiB/s wall  "
                f"cpu/wall {self.cpu / self.wall:4.2f}")


async def bench(root: str, size: int, objects: int, segment: int) -> list[Meter]:
    # the gateway's thread pool, not asyncio's default of cpu+4 threads: six archives'
    # fsyncs would hold every thread of that one while the encoding waited
    asyncio.get_running_loop().set_default_executor(io_executor())
    disks = {f"d{i}": DiskStore(f"d{i}", os.path.join(root, f"d{i}")).open() for i in range(6)}
    cluster = Cluster(disks, [DiskInfo(d, f"node{i}", "z1") for i, d in enumerate(disks)])
    cluster.volumes = {"v1": {"id": "v1", "width": 6, "disks": list(disks)}}
    service = ObjectService(cluster, None, None, {"ec": Policy.parse("ec", "ec:4+2")}, "ec", None, 0, segment)
    repairer = Repairer(cluster, None, None)
    put, get, degraded, repair = Meter("PUT"), Meter("GET"), Meter("GET degraded"), Meter("repair")
    try:
        for n in range(objects):
            data = random.Random(n).randbytes(size)

            async def body():
                view = memoryview(data)
                for at in range(0, size, CHUNK):
                    yield bytes(view[at:at + CHUNK])

            record = await put.run(lambda: service.store(body(), size, BodyDigests({}, size, None),
                                                         {"bucket": "b", "key": f"k{n}"}), size)

            async def read_all():
                return b"".join([c async for c in service.read(record, 0, size - 1)])
            assert await get.run(read_all, size) == data
            down = record["disks"][:2]
            for d in down:
                cluster.mark_down(d, "bench: degraded read")
            assert await degraded.run(read_all, size) == data
            for d in down:
                cluster.mark_up(d)
            volume = cluster.volumes["v1"]
            for lost in (0, 5):
                await disks[volume["disks"][lost]].delete_archive(layout.archive_name(record["version_id"], lost))
                written = await repair.run(lambda: repairer.rebuild_fragments(record, volume, {lost}), 0)
                repair.bytes += sum(written.values())
            assert await read_all() == data
            await service.remove(record)
    finally:
        for d in disks.values():
            d.close()
    return [put, get, degraded, repair]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--objects", type=int, default=4)
    p.add_argument("--segment-kib", type=int, default=1024)
    p.add_argument("--root", help="where the disk folders go (default: a temporary folder, removed after)")
    args = p.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="pocket-bench-pipeline-")
    try:
        meters = asyncio.run(bench(root, args.size_mib * MIB, args.objects, args.segment_kib << 10))
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{args.objects} x {args.size_mib} MiB, EC 4+2, segments of {args.segment_kib} KiB, {os.cpu_count()} cores")
    for m in meters:
        print(m.line())


if __name__ == "__main__":
    main()
