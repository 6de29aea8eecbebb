"""What one object version costs in the index, and how fast one PostgreSQL primary commits.

    python -m bench.pg_metadata [--versions 100000] [--seconds 20] [--writers 256]

Starts a throwaway PostgreSQL server from the system's packages (as the tests do; the
server's defaults: synchronous_commit on, fsync on) and measures, for records shaped like
the gateway's (bench/volume_scan.py `record`):

* bytes per version: pg_total_relation_size (heap + TOAST + primary-key btree) of every
  table after `--versions` versions, per version, for an unversioned bucket (a row in
  `objects`) and a versioned one (four versions per key: rows in `versions`, the latest
  also in `objects`), the volume index included, loaded into LMDB and moved to
  PostgreSQL with `pocket index copy`'s code; and the LMDB environment's compacted size;
* commits per second: single-row (one PUT per transaction, one caller at a time, as a
  one-shot command does) and batched (the gateway's IndexWriter: `--writers` callers in
  flight, each batch one SERIALIZABLE transaction with a savepoint per PUT).

Numbers from a shared, loaded machine are a floor, not a capacity plan: say so.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time

from bench.peers.ports import free_run
from bench.proc_cpu import TICKS, stat_fields
from bench.volume_scan import record
from storage.index import volume_index
from storage.index.backend import TABLES
from storage.index.batcher import IndexWriter
from storage.index.copy import copy_index
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.index.local_postgres import LocalPostgres
from storage.index.pg_backend import PgBackend, migrate_schema
from storage.objects.commits import install


def load(index: Index, n: int, versioned: bool, volumes: int = 100, batch: int = 2000) -> None:
    """n versions: one per key, or (versioned) four per key, newest installed last."""
    index.create_bucket("bench", {"owner": "pocket", "created": 1.7e9,
                                  **({"versioning": "Enabled"} if versioned else {})})
    for lo in range(0, n, batch):
        rows = []
        for i in range(lo, min(n, lo + batch)):
            key, rec = record(i // 4 if versioned else i, volumes)
            rec = {**rec, "version_id": f"{0x17e0000000000000 + i:016x}{i:016x}", "versioned": versioned}
            rows.append((key, rec))
        index.write(lambda ops, rows=rows: [install(ops, "bench", k, r) for k, r in rows])


def pg_sizes(dsn: str) -> dict[str, tuple[int, int, int]]:
    """table -> (rows, total bytes, of which index bytes), after a VACUUM ANALYZE."""
    import psycopg
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        out = {}
        for t in TABLES:
            rows = conn.execute(f"SELECT count(*) FROM pocket_{t}").fetchone()[0]
            total, idx = conn.execute("SELECT pg_total_relation_size(%s), pg_indexes_size(%s)",
                                      (f"pocket_{t}", f"pocket_{t}")).fetchone()
            out[t] = (rows, total, idx)
        return out


def lmdb_bytes(path: str) -> int:
    """Bytes of a compacted copy of the environment (what the data takes, free pages left out)."""
    index = Index(LmdbBackend(path))
    try:
        dest = path + "-compact"
        index.backup(dest)
        return os.path.getsize(os.path.join(dest, "data.mdb"))
    finally:
        index.close()


def server_cpu(server: LocalPostgres) -> float:
    """CPU seconds used so far by the server: the postmaster and its children (backends,
    WAL writer, checkpointer), from /proc. What one primary spends per commit, whatever
    else loads the machine."""
    with open(os.path.join(server.data, "postmaster.pid")) as f:
        root = int(f.readline())
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fields = stat_fields(pid)
        if not fields:
            continue
        if int(pid) == root or int(fields[1]) == root:   # fields[1]: the parent pid
            total += int(fields[11]) + int(fields[12])   # utime + stime
    return total / TICKS


class Costs:
    """Wall, client CPU and server CPU seconds of a stretch of work."""

    def __init__(self, server: LocalPostgres):
        self.server = server

    def __enter__(self):
        self.wall, self.cpu, self.srv = time.monotonic(), time.process_time(), server_cpu(self.server)
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.srv = server_cpu(self.server) - self.srv


def single_rows(index: Index, seconds: float, start: int) -> int:
    """PUTs done, one per transaction, one after another, for `seconds`."""
    deadline, n = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        key, rec = record(start + n, 100)
        index.write(lambda ops: install(ops, "bench", key, rec))
        n += 1
    return n


def batched(index: Index, seconds: float, writers: int, start: int) -> tuple[int, int]:
    """(PUTs, commits) in `seconds` through the gateway's group-committing writer."""
    async def run():
        writer = IndexWriter(index)
        counter = [start]
        deadline = time.monotonic() + seconds

        async def caller():
            while time.monotonic() < deadline:
                counter[0] += 1
                key, rec = record(counter[0], 100)
                await writer.submit(lambda ops: install(ops, "bench", key, rec))
        commits = writer.commits
        await asyncio.gather(*(caller() for _ in range(writers)))
        await writer.aclose()
        return counter[0] - start, writer.commits - commits
    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--writers", type=int, default=256)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="pocket-bench-meta-")
    server = LocalPostgres(tempfile.mkdtemp(prefix="pocket-bench-pg-"), free_run(1))
    server.init()
    server.start()
    try:
        for versioned in (False, True):
            label = "versioned (4 per key)" if versioned else "unversioned"
            path = os.path.join(root, f"lmdb-{int(versioned)}")
            index = Index(LmdbBackend(path))
            try:
                started = time.monotonic()
                load(index, args.versions, versioned)
                loaded = time.monotonic() - started
                with index.read() as ops:
                    entries = sum(1 for k, _ in ops.txn.range(volume_index.TABLE) if k != volume_index.FILLED)
            finally:
                index.close()
            size = lmdb_bytes(path)
            print(f"\nLMDB, {label}: {args.versions:,} versions loaded in {loaded:.1f}s; {size:,} bytes compacted, "
                  f"{size / args.versions:.0f} bytes per version ({entries:,} volume-index entries included)")
            # the same rows into PostgreSQL the way an operator moves an index (`pocket index copy`)
            dsn = server.create_database(f"meta_{int(versioned)}")
            migrate_schema(dsn)
            src, dst = Index(LmdbBackend(path)), Index(PgBackend(dsn))
            try:
                report = copy_index(src, dst)
            finally:
                src.close()
                dst.close()
            sizes = pg_sizes(dsn)
            total = sum(t for _, t, _ in sizes.values())
            print(f"\n## PostgreSQL, {label}: {args.versions:,} versions ({report.copied:,} rows copied from LMDB "
                  f"and the volume index made, in {report.seconds:.1f}s)")
            print("| table | rows | total bytes | of which btree | bytes per version |")
            print("|---|---|---|---|---|")
            for t, (rows, tb, ib) in sizes.items():
                if rows:
                    print(f"| {t} | {rows:,} | {tb:,} | {ib:,} | {tb / args.versions:.0f} |")
            print(f"| **all** | | {total:,} | {sum(i for _, _, i in sizes.values()):,} | "
                  f"**{total / args.versions:.0f}** |", flush=True)

        dsn = server.create_database("commits")
        migrate_schema(dsn)
        index = Index(PgBackend(dsn))
        try:
            index.create_bucket("bench", {"owner": "pocket"})
            with Costs(server) as one:
                single = single_rows(index, args.seconds, 0)
            with Costs(server) as many:
                puts, commits = batched(index, args.seconds, args.writers, 10_000_000)
        finally:
            index.close()
        print(f"\n## PostgreSQL commits ({args.seconds:g}s each; CPU per PUT measured, wall rates on this load)")
        print("| mode | PUTs/s | commits/s | PUTs per commit | server CPU ms per PUT | client CPU ms per PUT |")
        print("|---|---|---|---|---|---|")
        print(f"| single-row, one at a time | {single / one.wall:,.0f} | {single / one.wall:,.0f} | 1 | "
              f"{one.srv / single * 1e3:.2f} | {one.cpu / single * 1e3:.2f} |")
        print(f"| batched (IndexWriter), {args.writers} in flight | {puts / many.wall:,.0f} | "
              f"{commits / many.wall:,.1f} | {puts / max(commits, 1):.0f} | {many.srv / puts * 1e3:.2f} | "
              f"{many.cpu / puts * 1e3:.2f} |", flush=True)
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
