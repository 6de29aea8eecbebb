"""bench/cpu_per_request.py against a real embedded gateway: a smoke run (about a second
per scenario) whose reported requests really happened and whose CPU is the gateway's."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from .harness import ACCESS_KEY, SECRET_KEY, ProcCluster

LINE = re.compile(r"^(?P<name>[\w-]+): (?P<ops>\d+) ops, (?P<errors>\d+) errors, server CPU (?P<cpu>[\d.]+) s, "
                  r"(?P<per>[\d.]+) ms per request \(user (?P<user>[\d.]+), system (?P<system>[\d.]+)\)$")


def test_cpu_per_request_reports_the_gateways_cpu_for_requests_that_happened(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        out = subprocess.run(
            [sys.executable, "-m", "bench.cpu_per_request", "--endpoint", c.endpoint, "--access-key", ACCESS_KEY,
             "--secret-key", SECRET_KEY, "--pid", str(c.gateway_pid()), "--duration", "1",
             "--bucket", "cpu-smoke", "--scenarios", "put-4k-c1,get-4k-c16,delete-c16"],
            capture_output=True, text=True, timeout=300, env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        assert out.returncode == 0, out.stdout + out.stderr
        rows = {m["name"]: m for m in map(LINE.match, out.stdout.splitlines()) if m}
        assert set(rows) == {"put-4k-c1", "get-4k-c16", "delete-c16"}, out.stdout
        for name, row in rows.items():
            assert int(row["ops"]) > 0 and int(row["errors"]) == 0, out.stdout
            assert float(row["cpu"]) > 0 and float(row["per"]) > 0, out.stdout   # a gateway serving is never free
        keys = []
        for page in c.client().get_paginator("list_objects_v2").paginate(Bucket="cpu-smoke",
                                                                         Prefix="bench/put-4k-c1/"):
            keys += [o["Key"] for o in page.get("Contents", [])]
        assert len(keys) == int(rows["put-4k-c1"]["ops"])   # what it counted is what the gateway stored
        left = c.client().list_objects_v2(Bucket="cpu-smoke", Prefix="bench/delete-c16/").get("KeyCount", 0)
        assert left == 0   # it deleted every key it filled for the delete scenario
    finally:
        c.close()
