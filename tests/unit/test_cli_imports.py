"""`pocket` commands load only what they run, so one-shot commands start at once.

Each command imports its storage/ code inside the command function. Importing the
gateway (aiohttp's server, the S3 layer, every service) once cost every command about
0.8 s before it did anything; these tests run the real command in a fresh interpreter
and look at what it imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.loaded_modules import ROOT, loaded as _loaded, run_pocket


def _pocket(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, int, set[str]]:
    return run_pocket(tmp_path / "modules.json", list(args), {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def test_help_imports_no_storage_and_no_aiohttp(tmp_path):
    proc, code, modules = _pocket(tmp_path, "--help")
    assert code == 0 and "scrub" in proc.stdout and "status" in proc.stdout
    assert _loaded(modules, "aiohttp", "storage", "asyncio") == []


def test_a_command_help_imports_no_storage(tmp_path):
    proc, code, modules = _pocket(tmp_path, "disk", "drain", "--help")
    assert code == 0 and "--rate" in proc.stdout
    assert _loaded(modules, "aiohttp", "storage") == []


def test_status_of_a_stopped_cluster_does_not_load_the_gateway(tmp_path):
    from storage.config_embedded import embedded
    data = tmp_path / "cluster"
    embedded(str(data), 9, nodes=0, disks=6)
    proc, code, modules = _pocket(tmp_path, "status", "--data", str(data), "--json")
    assert code == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert len(status["disks"]) == 6
    assert _loaded(modules, "storage.gateway", "storage.s3", "storage.lifecycle") == []


def test_a_gateway_without_migrating_buckets_loads_no_boto3():
    """boto3 costs a gateway a fifth of a second of CPU at every start; only a gateway
    with a migrating bucket (storage/migrate/source.py) needs it."""
    proc = subprocess.run([sys.executable, "-c", "import json, sys, storage.gateway; print(json.dumps(sorted(sys.modules)))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout))
    assert _loaded(modules, "boto3", "s3transfer", "botocore.config", "botocore.session") == []
