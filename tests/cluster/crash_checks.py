"""What the crash probes (test_crash*.py, one file each so that xdist runs them side by
side) share: the cluster's shape, the seed, and the checks after the crashes: the index
rebuilt from the disks keeps every acknowledged state, a scrub leaves exactly the archives
the index references, and a second rebuild agrees with the live index.

The model of client work and its per-key checks are workload.py's."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time

from . import forkserver
from .harness import ProcCluster, metric, pocket
from .workload import Ledger, archives_on_disk, check_keys, expected_archives, run_round, tmp_files

# The crash probes' cluster: small segments and packs, so that a few seconds of client
# work write many segments, packed and not; no background scrub (the probes scrub when
# they check); a repairer that looks every half second.
SMALL_SEGMENTS = {"segment_size": 64 << 10, "pack_threshold": 32 << 10}
CRASH_SECTIONS = {"scrub": {"enabled": False}, "repair": {"interval": 0.5}}


def seed() -> int:
    """The probe's RNG seed, printed (and taken from POCKET_CRASH_SEED) so a failure reproduces."""
    value = int(os.environ.get("POCKET_CRASH_SEED") or random.randrange(1 << 32))
    print(f"crash test seed: POCKET_CRASH_SEED={value}")
    return value


def gateway_kill_rounds(c: ProcCluster, ledger: Ledger, rng: random.Random, rounds: int) -> None:
    """Rounds of client work, each cut short by a SIGKILL of the gateway; after each restart
    every key holds a state its client was told or might have been. A gateway that owns its
    disks (embedded) owns their temp files too: its restart leaves none."""
    for _ in range(rounds):
        run_round(c, ledger, rng, workers=4, kill_after=rng.uniform(0.5, 2.5),
                  kill=lambda: c.signal("gateway", signal.SIGKILL))
        c.start_gateway()
        if c.embedded:
            assert not tmp_files(c), "the restarted gateway left temp files on its disks"
        check_keys(c.client(), ledger)


def wait_repaired(c: ProcCluster, timeout: float = 60.0) -> dict:
    """`pocket status` once the gateway's repair queue is empty (or the time is up),
    polled over HTTP (the queue length metric) rather than a process per look."""
    deadline = time.monotonic() + timeout
    while metric(c.endpoint, "pocket_repair_queue_length") and time.monotonic() < deadline:
        time.sleep(0.2)
    return pocket(c, "status", "--json")[1]


def rebuild_index(c: ProcCluster, ledger: Ledger) -> None:
    """`pocket index rebuild` from the disks alone. No disk was lost, so a version it
    cannot read back is an upload a crash interrupted before its acknowledgement: a
    warning (exit 0), and only keys with an unacknowledged write may have one."""
    c.stop("gateway")
    shutil.rmtree(c.root + "/index")
    out = forkserver.run(["index", "rebuild", "--config", c.config, "--json"], timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["lost"] == [] and report["unreadable"] == 0, report["lost"]
    interrupted = [row for row in report["interrupted"] if "of upload" not in row["why"]]
    parts = [row["key"] for row in report["interrupted"] if "of upload" in row["why"]]
    keys = [row["key"] for row in interrupted]
    assert all(ledger.keys[key].maybe for key in keys), f"acknowledged objects lost:\n{ledger.explain(keys)}"
    open_uploads = set(ledger.uploads.values()) | ledger.maybe_uploads
    assert set(parts) <= open_uploads, f"parts of finished uploads lost: {parts}"
    c.start_gateway()


def collect_and_compare(c: ProcCluster, ledger: Ledger) -> None:
    """Rebuild the index from the disks as the crashes left them: every acknowledged state
    holds. Then scrub away orphans, check disks = index, rebuild again: it agrees with the
    live index on every key."""
    rebuild_index(c, ledger)
    check_keys(c.client(), ledger)
    pocket(c, "scrub", "--orphan-grace", "0", "--json", ok=(0, 1))   # the rebuilt index has no repair queue
    st = wait_repaired(c)
    assert st["repair_queue"] == 0, st["at_risk"]
    c.stop("gateway")       # so that `pocket scrub` owns the disks of an embedded cluster too
    _, report = pocket(c, "scrub", "--orphan-grace", "0", "--json")
    assert report["corrupt"] == [] and report["missing"] == [] and report["orphans_kept"] == [], report
    assert archives_on_disk(c) == expected_archives(c.root + "/index"), "orphaned or missing archives"
    c.start_gateway()
    live = check_keys(c.client(), ledger)
    rebuild_index(c, ledger)
    rebuilt = check_keys(c.client(), ledger)
    differ = sorted(k for k in set(live) | set(rebuilt) if live.get(k) != rebuilt.get(k))
    assert not differ, f"the rebuilt index disagrees with the live one on:\n{ledger.explain(differ)}"


def whole_again(c: ProcCluster) -> None:
    """After the repair: a scrub finds nothing missing or corrupt and, with the gateway
    stopped, the disks hold exactly the archives the index references and no temp file."""
    _, clean = pocket(c, "scrub", "--orphan-grace", "0", "--json")
    assert clean["missing"] == [] and clean["corrupt"] == []
    c.stop("gateway")
    assert archives_on_disk(c) == expected_archives(c.root + "/index")
    assert not tmp_files(c)
    c.start_gateway()
