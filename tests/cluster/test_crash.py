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

import random
import signal

import pytest

from .crash_checks import CRASH_SECTIONS, SMALL_SEGMENTS, collect_and_compare, gateway_kill_rounds, seed
from .harness import ProcCluster
from .workload import Ledger, check_keys, check_uploads, run_round, tmp_files

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)


@pytest.fixture
def crash_cluster(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), storage=SMALL_SEGMENTS, sections=CRASH_SECTIONS).start()
    yield c
    c.close()


def test_gateway_sigkill_mid_request_loses_nothing_acknowledged(crash_cluster):
    c = crash_cluster
    rng = random.Random(seed())
    c.client().create_bucket(Bucket="crash")
    ledger = Ledger("crash")
    gateway_kill_rounds(c, ledger, rng, 4)
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
    collect_and_compare(c, ledger)
