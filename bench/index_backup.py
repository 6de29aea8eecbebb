"""Index backup versus index rebuild on a loaded cluster (one command):

    python -m bench.index_backup [--objects 20000] [--threads 16] [--root DIR] [--markdown]

Starts a 6-node EC 4+2 cluster on 127.0.0.1 (background scrub off), PUTs `--objects`
small objects (1-4 KiB, replicated, packed: the index grows, the disks barely), then
times `pocket index backup` while the gateway runs, and `pocket index rebuild` (gateway
stopped), which must read every disk. Both are timed as an operator sees them, process
start included. Compare runs on the same machine only.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from tests.cluster.harness import REPO, ProcCluster


def _pocket(c: ProcCluster, *args) -> tuple[float, str]:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "cli", *args, "--config", c.config], cwd=REPO, capture_output=True,
                         text=True, check=True)
    return time.monotonic() - started, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--root", default=None)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="pocket-bench-index-")
    c = ProcCluster(os.path.join(root, "cluster"), sections={"scrub": {"enabled": False}}).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="bench")

        def put(i: int) -> None:
            body = random.Random(i).randbytes(1024 + i % 3072)
            s3.put_object(Bucket="bench", Key=f"obj/{i:08d}", Body=body)
        started = time.monotonic()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(put, range(args.objects)))
        load_s = time.monotonic() - started
        print(f"loaded {args.objects} objects in {load_s:.1f}s ({args.objects / load_s:.0f}/s)", flush=True)

        backup_s, out = _pocket(c, "index", "backup", os.path.join(root, "backup"), "--json")
        report = json.loads(out)
        print(f"index backup (gateway running): {backup_s:.2f}s wall, {report['seconds']:.2f}s copying, "
              f"{report['bytes'] / 2**20:.1f} MiB", flush=True)
        c.stop("gateway")
        rebuild_s, out = _pocket(c, "index", "rebuild")
        print(f"index rebuild (gateway stopped): {rebuild_s:.2f}s wall; {out.strip()}", flush=True)
        if args.markdown:
            print(f"| {args.objects} objects | {report['bytes'] / 2**20:.1f} MiB | {backup_s:.2f} s "
                  f"({report['seconds']:.2f} s copying) | {rebuild_s:.2f} s |")
    finally:
        c.close()
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
