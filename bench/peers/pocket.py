"""Pocket itself, in each shape an operator can start with `pocket up`.

The harness runs `pocket up` as a user would and reads the endpoints and keys from the
banner it prints, so the benchmark measures exactly what `pocket up` serves. On the way
down it measures the index's bytes per object version (issue 11's metadata size):
PostgreSQL through the DSN while it still runs, LMDB after the gateway has let go.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from . import Target, Unavailable, procs
from .ports import free_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# target name -> (`pocket up` options, what the report calls it)
SHAPES = {
    "pocket": ([], "`pocket up`: one gateway, 6 in-process disks, LMDB index"),
    "pocket-w2": (["--workers", "2"], "`pocket up --workers 2`: two gateway workers, 6 in-process disks"),
    "pocket-nodes6": (["--nodes", "6"], "`pocket up --nodes 6`: one gateway, 6 node processes, LMDB index"),
    "pocket-pg": (["--nodes", "6", "--postgres", "--gateways", "1"],
                  "`pocket up --nodes 6 --postgres --gateways 1`: one gateway, index on PostgreSQL"),
    "pocket-pg2": (["--nodes", "6", "--postgres", "--gateways", "2"],
                   "`pocket up --nodes 6 --postgres --gateways 2`: two gateways on one PostgreSQL, "
                   "requests alternated between them"),
}


def _ports_needed(args: list[str]) -> int:
    """`pocket up` takes ports from --port up: gateways, nodes, then PostgreSQL."""
    def opt(name: str, default: int) -> int:
        return int(args[args.index(name) + 1]) if name in args else default
    return opt("--gateways", 1) + opt("--nodes", 0) + ("--postgres" in args)


def _banner(out_path: str, proc, log_path: str, timeout: float) -> dict:
    """Endpoints and keys from `pocket up`'s banner, once it has printed all of it."""
    deadline = time.monotonic() + timeout
    while True:
        with open(out_path, errors="replace") as f:
            text = f.read()
        if "Ctrl-C stops it." in text:
            return {"endpoints": re.findall(r"S3 endpoint : (\S+)", text),
                    "access_key": re.search(r"Access key  : (\S+)", text).group(1),
                    "secret_key": re.search(r"Secret key  : (\S+)", text).group(1)}
        if proc.poll() is not None:
            raise RuntimeError(f"pocket up exited with {proc.returncode}:\n{procs.tail(log_path)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"pocket up printed no banner within {timeout:.0f}s:\n{procs.tail(log_path)}")
        time.sleep(0.1)


def start(name: str, work: str, timeout: float = 180.0) -> Target:
    args, describe = SHAPES[name]
    if "--postgres" in args:
        from storage.index.local_postgres import LocalPostgresError, bindir
        try:
            bindir()
        except LocalPostgresError:
            raise Unavailable(f"{name}: PostgreSQL's server binaries are missing; run scripts/install-test-tools "
                              "(apt-get install postgresql)") from None
    data = os.path.join(work, "data")
    os.makedirs(work, exist_ok=True)
    port = free_run(_ports_needed(args))
    out_path, log_path = os.path.join(work, "up.out"), os.path.join(work, "up.log")
    with open(out_path, "wb") as out, open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "up", "--data", data, "--port", str(port), *args],
                                      cwd=REPO, stdout=out, stderr=log, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
    try:
        found = _banner(out_path, proc, log_path, timeout)
    except BaseException:
        procs.stop(proc, 60)
        raise
    target = Target(name, ",".join(found["endpoints"]), found["access_key"], found["secret_key"],
                    stop=lambda: None, describe=describe, pid=proc.pid,
                    roots=[proc.pid] + _postmaster(os.path.join(data, "postgres")))
    target.stop = lambda: _stop(target, proc, os.path.join(data, "pocket.toml"))
    return target


def _postmaster(folder: str) -> list[int]:
    """PostgreSQL's main process under `pocket up --postgres` (pg_ctl detaches it from pocket up)."""
    try:
        with open(os.path.join(folder, "data", "postmaster.pid")) as f:
            return [int(f.readline())]
    except (OSError, ValueError):
        return []


def _stop(target: Target, proc, config: str) -> None:
    """SIGTERM to `pocket up` only (it stops its gateways, nodes and PostgreSQL itself),
    with the index measured while it can be."""
    from storage import config as config_mod
    cfg = config_mod.load(config)
    postgres = cfg.index.backend == "postgres"
    if postgres:
        target.info["metadata"] = index_size(cfg)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            procs.stop(proc, 5, signal.SIGKILL)
    if not postgres:
        target.info["metadata"] = index_size(cfg)


def index_size(cfg) -> dict:
    """Bytes the index uses per object version: its tables' size over the versions it holds."""
    from storage.index.index import open_index
    index = open_index(cfg)
    try:
        stats = index.stats()
    finally:
        index.close()
    entries = stats["entries"]
    versions = entries.get("objects", 0) + entries.get("versions", 0)
    used = stats["used_bytes"]
    return {"backend": stats["backend"], "bytes": used, "entries": entries, "versions": versions,
            "bytes_per_version": round(used / versions) if versions else 0}


def node_pids(target: Target) -> list[int]:
    """The node processes `pocket up` started for this target (for degraded reads)."""
    return [pid for pid in procs.children(target.pid) if "node" in procs.cmdline(pid)[3:4]]
