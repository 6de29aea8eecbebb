"""Finding one volume's versions: the whole-index scan versus the volume index.

    python -m bench.volume_scan [--sizes 10000 100000] [--volumes 100] [--postgres] [--root DIR]

Fills a fresh index (LMDB; with --postgres also a throwaway local PostgreSQL server,
as the tests start one) with N object versions spread evenly over `--volumes` volumes,
records shaped like the gateway's (6 disks, checksums, owner, content type), then lists
one volume's archive sets both ways: `live_sets` filtered by volume (what repair, disk
moves and disk restore did before) and `volume_index.volume_sets`. Prints wall and CPU
seconds of each. CPU time (time.process_time) is the number to compare on a busy
machine; PostgreSQL's own work runs in its server process and shows in wall time only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from bench.peers.ports import free_run
from storage.durability.sets import live_sets
from storage.index import volume_index
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend


def record(i: int, volumes: int) -> tuple[str, dict]:
    """A version record as a 1-4 KiB replicated PUT makes it (fields as objects/put.py writes them)."""
    key = f"data/{i % 997:03d}/object-{i:09d}.bin"
    vid = f"{0x17e0000000000000 + i * 7919:016x}{i:016x}"
    volume = f"w6-{i % volumes:04d}"
    return key, {"v": 2, "bucket": "bench", "key": key, "version_id": vid, "created": 1.7e9 + i, "size": 1024 + i % 3072,
                 "etag": f"{i * 2654435761 % 2**128:032x}", "checksums": {"CRC64NVME": "AAAAAAAAAAA="},
                 "checksum_type": "FULL_OBJECT", "policy": "replica:3", "k": 1, "m": 2, "segment_size": 1 << 20,
                 "volume": volume, "disks": [f"n{(i + j) % 6 + 1}d1" for j in range(6)], "owner": "pocket",
                 "content_type": "application/octet-stream", "archive_format": 2}


def fill(index: Index, n: int, volumes: int, batch: int = 2000) -> float:
    started = time.monotonic()
    index.create_bucket("bench", {"owner": "pocket", "created": 1.7e9})
    for lo in range(0, n, batch):
        rows = [record(i, volumes) for i in range(lo, min(n, lo + batch))]
        index.write(lambda ops, rows=rows: [ops.put_object("bench", k, r) for k, r in rows])
    index.write(lambda ops: ops.txn.put(volume_index.TABLE, volume_index.FILLED, b""))
    return time.monotonic() - started


def timed(fn) -> tuple[float, float, int]:
    wall, cpu = time.monotonic(), time.process_time()
    n = fn()
    return time.monotonic() - wall, time.process_time() - cpu, n


def measure(index: Index, volume: str) -> dict:
    scan = timed(lambda: sum(1 for s in live_sets(index) if s["volume"] == volume))
    indexed = timed(lambda: sum(1 for _ in volume_index.volume_sets(index, volume)))
    assert scan[2] == indexed[2], (scan, indexed)
    return {"scan": scan, "indexed": indexed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--volumes", type=int, default=100)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--root", default=None)
    args = ap.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="pocket-bench-volscan-")
    server = None
    if args.postgres:
        from storage.index.local_postgres import LocalPostgres
        from storage.index.pg_backend import PgBackend, migrate_schema
        server = LocalPostgres(tempfile.mkdtemp(prefix="pocket-bench-pg-"), free_run(1))   # its own 0700 folder
        server.init()
        server.start()
    print("| backend | objects | versions on the volume | full scan: wall / CPU s | volume index: wall / CPU s |")
    print("|---|---|---|---|---|")
    try:
        for n in args.sizes:
            backends = [("lmdb", lambda: Index(LmdbBackend(os.path.join(root, f"lmdb-{n}"))))]
            if server is not None:
                def pg(n=n):
                    dsn = server.create_database(f"volscan_{n}")
                    migrate_schema(dsn)
                    return Index(PgBackend(dsn))
                backends.append(("postgres", pg))
            for name, make in backends:
                index = make()
                try:
                    fill(index, n, args.volumes)
                    m = measure(index, "w6-0042")
                    print(f"| {name} | {n:,} | {m['indexed'][2]:,} | {m['scan'][0]:.3f} / {m['scan'][1]:.3f} | "
                          f"{m['indexed'][0]:.4f} / {m['indexed'][1]:.4f} |", flush=True)
                finally:
                    index.close()
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.folder, ignore_errors=True)
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
