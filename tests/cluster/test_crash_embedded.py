"""Crash probe: SIGKILL of a gateway that owns its disks (`pocket up`'s shape); the model
and checks are crash_checks.py's, in a file of its own so that xdist runs the crash probes
side by side."""
from __future__ import annotations

import random

import pytest

from .crash_checks import CRASH_SECTIONS, SMALL_SEGMENTS, collect_and_compare, gateway_kill_rounds, seed
from .harness import ProcCluster
from .workload import Ledger, check_keys, check_uploads

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)


def test_embedded_gateway_sigkill_loses_nothing_acknowledged(tmp_path):
    """`pocket up`'s shape: the gateway owns the disks, so a SIGKILL of the gateway is also
    a SIGKILL of every pack writer and archive stream; its restart recovers them."""
    rng = random.Random(seed())
    c = ProcCluster(str(tmp_path / "cluster"), storage=SMALL_SEGMENTS, embedded=True,
                    sections=CRASH_SECTIONS).start()
    try:
        c.client().create_bucket(Bucket="embedded")
        ledger = Ledger("embedded")
        gateway_kill_rounds(c, ledger, rng, 3)
        assert ledger.unknown >= 3
        s3 = c.client()
        check_uploads(s3, ledger)
        check_keys(s3, ledger)
        collect_and_compare(c, ledger)
    finally:
        c.close()
