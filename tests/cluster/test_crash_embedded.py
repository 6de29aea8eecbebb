"""Crash probe: SIGKILL of a gateway that owns its disks (`pocket up`'s shape); the model
and checks are crash_checks.py's, in a file of its own so that xdist runs the crash probes
side by side."""
from __future__ import annotations

import random
import signal

from .crash_checks import CRASH_SECTIONS, SMALL_SEGMENTS, collect_and_compare, seed
from .harness import ProcCluster
from .workload import Ledger, check_keys, check_uploads, run_round, tmp_files


def test_embedded_gateway_sigkill_loses_nothing_acknowledged(tmp_path):
    """`pocket up`'s shape: the gateway owns the disks, so a SIGKILL of the gateway is also
    a SIGKILL of every pack writer and archive stream; its restart recovers them."""
    rng = random.Random(seed())
    c = ProcCluster(str(tmp_path / "cluster"), storage=SMALL_SEGMENTS, embedded=True,
                    sections=CRASH_SECTIONS).start()
    try:
        c.client().create_bucket(Bucket="embedded")
        ledger = Ledger("embedded")
        for _ in range(3):
            run_round(c, ledger, rng, workers=4, kill_after=rng.uniform(0.5, 2.5),
                      kill=lambda: c.signal("gateway", signal.SIGKILL))
            c.start_gateway()
            assert not tmp_files(c), "the restarted gateway left temp files on its disks"
            check_keys(c.client(), ledger)
        assert ledger.unknown >= 3
        s3 = c.client()
        check_uploads(s3, ledger)
        check_keys(s3, ledger)
        collect_and_compare(c, ledger)
    finally:
        c.close()
