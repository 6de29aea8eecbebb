"""Crash probes: SIGKILL the gateway, a node or a repair run in the middle of client
work, restart, and check what a user would (see workload.py for the model):

- every acknowledged object reads back byte-exact with its ETag, an acknowledged
  delete stays deleted, an unacknowledged write is whole or absent;
- listings agree with GET; open multipart uploads can be completed or aborted;
- a scrub with no orphan grace leaves exactly the archives the index references;
- `pocket index rebuild` from the disks agrees with the live index.

The RNG seed is printed (and taken from POCKET_CRASH_SEED) so a failure reproduces.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .harness import REPO, ProcCluster, metric, pocket, wait_http
from .workload import Ledger, archives_on_disk, check_keys, check_uploads, expected_archives, run_round, tmp_files

SMALL_SEGMENTS = {"segment_size": 64 << 10, "pack_threshold": 32 << 10}


def _seed() -> int:
    seed = int(os.environ.get("POCKET_CRASH_SEED") or random.randrange(1 << 32))
    print(f"crash test seed: POCKET_CRASH_SEED={seed}")
    return seed


@pytest.fixture
def crash_cluster(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), storage=SMALL_SEGMENTS,
                    sections={"scrub": {"enabled": False}, "repair": {"interval": 0.5}}).start()
    yield c
    c.close()


def _restart_gateway(c: ProcCluster) -> None:
    c.start_gateway()
    wait_http(c.endpoint + "/_pocket/ready")


def _wait_repaired(c: ProcCluster, timeout: float = 60.0) -> dict:
    """`pocket status` once the gateway's repair queue is empty (or the time is up),
    polled over HTTP (the queue length metric) rather than a process per look."""
    deadline = time.monotonic() + timeout
    while metric(c.endpoint, "pocket_repair_queue_length") and time.monotonic() < deadline:
        time.sleep(0.2)
    return pocket(c, "status", "--json")[1]


def _rebuild_index(c: ProcCluster, ledger: Ledger) -> None:
    """`pocket index rebuild` from the disks alone. No disk was lost, so a version it
    cannot read back is an upload a crash interrupted before its acknowledgement: a
    warning (exit 0), and only keys with an unacknowledged write may have one."""
    c.stop("gateway")
    shutil.rmtree(c.root + "/index")
    out = subprocess.run([sys.executable, "-m", "cli", "index", "rebuild", "--config", c.config, "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["lost"] == [] and report["unreadable"] == 0, report["lost"]
    interrupted = [row for row in report["interrupted"] if "of upload" not in row["why"]]
    parts = [row["key"] for row in report["interrupted"] if "of upload" in row["why"]]
    keys = [row["key"] for row in interrupted]
    assert all(ledger.keys[key].maybe for key in keys), f"acknowledged objects lost:\n{ledger.explain(keys)}"
    open_uploads = set(ledger.uploads.values()) | ledger.maybe_uploads
    assert set(parts) <= open_uploads, f"parts of finished uploads lost: {parts}"
    _restart_gateway(c)


def _collect_and_compare(c: ProcCluster, ledger: Ledger) -> None:
    """Rebuild the index from the disks as the crashes left them: every acknowledged state
    holds. Then scrub away orphans, check disks = index, rebuild again: it agrees with the
    live index on every key."""
    _rebuild_index(c, ledger)
    check_keys(c.client(), ledger)
    pocket(c, "scrub", "--orphan-grace", "0", "--json", ok=(0, 1))   # the rebuilt index has no repair queue
    st = _wait_repaired(c)
    assert st["repair_queue"] == 0, st["at_risk"]
    c.stop("gateway")       # so that `pocket scrub` owns the disks of an embedded cluster too
    _, report = pocket(c, "scrub", "--orphan-grace", "0", "--json")
    assert report["corrupt"] == [] and report["missing"] == [] and report["orphans_kept"] == [], report
    assert archives_on_disk(c) == expected_archives(c.root + "/index"), "orphaned or missing archives"
    _restart_gateway(c)
    live = check_keys(c.client(), ledger)
    _rebuild_index(c, ledger)
    rebuilt = check_keys(c.client(), ledger)
    differ = sorted(k for k in set(live) | set(rebuilt) if live.get(k) != rebuilt.get(k))
    assert not differ, f"the rebuilt index disagrees with the live one on:\n{ledger.explain(differ)}"


def test_gateway_sigkill_mid_request_loses_nothing_acknowledged(crash_cluster):
    c = crash_cluster
    rng = random.Random(_seed())
    c.client().create_bucket(Bucket="crash")
    ledger = Ledger("crash")
    for _ in range(4):
        run_round(c, ledger, rng, workers=4, kill_after=rng.uniform(0.5, 2.5),
                  kill=lambda: c.signal("gateway", signal.SIGKILL))
        _restart_gateway(c)
        check_keys(c.client(), ledger)
    assert ledger.acks > 20 and ledger.unknown >= 4, (ledger.acks, ledger.unknown)
    # A node killed while packs and big archives stream in: PUTs go on with 5 of 6 disks.
    victim = rng.choice(c.node_ids)
    run_round(c, ledger, rng, workers=4, kill_after=rng.uniform(0.5, 1.5),
              kill=lambda: c.signal(victim, signal.SIGKILL))
    leftovers = tmp_files(c)
    c.start_node(victim)
    assert not [p for p in tmp_files(c) if f"/{victim}d1/" in p], f"{victim} kept temp files {leftovers}"
    s3 = c.client()
    check_keys(s3, ledger)
    check_uploads(s3, ledger)
    check_keys(s3, ledger)
    _collect_and_compare(c, ledger)
