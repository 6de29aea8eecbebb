"""Crash probe: `pocket repair` and the gateway's repairer SIGKILLed while rebuilding a wiped
disk (the model and checks are crash_checks.py's; a file of its own so that xdist runs
the crash probes side by side)."""
from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .conftest import payload
from .crash_checks import SMALL_SEGMENTS, seed, wait_repaired, whole_again
from .harness import QUIET, REPO, ProcCluster, pocket
from .workload import Ledger, read_state

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)


def test_repair_killed_midway_finishes_later(tmp_path):
    """`pocket repair` and the gateway's repairer SIGKILLed while rebuilding a wiped disk."""
    rng = random.Random(seed())
    c = ProcCluster(str(tmp_path / "cluster"), storage=SMALL_SEGMENTS,
                    sections=QUIET).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="fix")
        objects = {f"o{i}": payload(rng.choice([1000, 200_000, 700_000])) for i in range(24)}
        for key, data in objects.items():
            s3.put_object(Bucket="fix", Key=key, Body=data)
        victim = rng.choice(c.node_ids)
        c.stop(victim)
        shutil.rmtree(c.disk_paths[f"{victim}d1"])
        c.start_node(victim)                       # a replacement drive, same id
        code, report = pocket(c, "scrub", "--json", ok=(1,))
        assert len(report["missing"]) >= len(objects) // 2
        assert {row["disk"] for row in report["missing"]} == {f"{victim}d1"}
        for _ in range(2):
            proc = subprocess.Popen([sys.executable, "-m", "cli", "repair", "--config", c.config],
                                    cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.8, 2.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        c.stop("gateway")
        text = open(c.config).read().replace("[repair]\nenabled = false", "[repair]\ninterval = 0.3")
        with open(c.config, "w") as f:
            f.write(text)
        c.start_gateway()
        time.sleep(rng.uniform(0.2, 1.0))
        c.signal("gateway", signal.SIGKILL)
        c.start_gateway()
        st = wait_repaired(c)
        assert st["repair_queue"] == 0, st["at_risk"]
        ledger = Ledger("fix")
        for key, data in objects.items():
            ledger.ack(key, data, read_state(s3, "fix", key)[1])
        whole_again(c)
        for other in [n for n in c.node_ids if n != victim][:2]:
            c.stop(other)                          # the rebuilt disk now carries its share
        for key, data in objects.items():
            assert read_state(s3, "fix", key)[0] == data, key
    finally:
        c.close()
