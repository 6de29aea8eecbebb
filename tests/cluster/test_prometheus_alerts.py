"""The durability and capacity alerts of deploy/alerts.yml, proven on a real Prometheus over a
real cluster (test_prometheus.py proves node down, disk down and disk nearly full): objects
at risk and one failure from loss when fragments are lost, repair stalled while repair is
off, a disk's scrub overdue, and the index nearly full; each resolves when an operator does
what its description says. One cluster and one Prometheus serve every check, in an order
where each leaves the next a working cluster. The rules are the shipped ones with `for:`
shortened (test_prometheus.Prometheus), so promtool's check of deploy/alerts.yml covers them."""
import json
import os
import re
import signal
import time

from .conftest import payload
from .harness import ProcCluster, archives_of, pocket
from .test_prometheus import Prometheus, _alert, _tools  # noqa: F401  (_tools: autouse fixture)

DAY = 86400


def _gateway_metric(c: ProcCluster, name: str) -> float:
    import urllib.request
    with urllib.request.urlopen(f"{c.endpoint}/_pocket/metrics", timeout=10) as r:
        text = r.read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M)[1])


def _set_index_max_size(c: ProcCluster, size: int | None) -> None:
    """Restart the gateway with gateway.index_max_size = size (None: the default)."""
    with open(c.config) as f:
        text = re.sub(r"(?m)^index_max_size = \d+\n", "", f.read())
    if size is not None:
        text = text.replace("[gateway]\n", f"[gateway]\nindex_max_size = {size}\n", 1)
    with open(c.config, "w") as f:
        f.write(text)
    c.signal("gateway", signal.SIGTERM)
    c.procs.pop("gateway")
    c.start_gateway()


def test_durability_and_capacity_alerts_fire_and_resolve(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"),
                    # disks scrub themselves once at start, then not for 5 days: a pass overdue
                    # stays overdue until someone asks for one
                    sections={"scrub": {"start_delay": 0.2, "interval": 5 * DAY, "collect_interval": 1.0},
                              "repair": {"enabled": False}}).start()
    prom = None
    try:
        prom = Prometheus(str(tmp_path), c)
        prom.wait("every target scraped", lambda: {t["labels"]["instance"] for t in prom.api("targets")["activeTargets"]
                                                   if t["health"] == "up"} == set(prom.targets))
        s3 = c.client()
        s3.create_bucket(Bucket="risk")
        bodies = {f"k{i}": payload(1_500_000 + i, f"alerts-{i}") for i in range(3)}
        for key, body in bodies.items():
            s3.put_object(Bucket="risk", Key=key, Body=body)
        prom.wait("every disk's first scrub pass", lambda: len(prom.query(
            "pocket_node_scrub_last_full_pass_timestamp_seconds > 0")) == len(c.node_ids), timeout=60)

        # A disk whose last full pass finished 4 days ago (and is not due for another day).
        c.signal("n2", signal.SIGTERM)
        c.procs.pop("n2")
        state_path = os.path.join(c.disk_paths["n2d1"], "scrub-state.json")
        with open(state_path) as f:
            state = json.load(f)
        state["last_full_pass"]["finished"] = time.time() - 4 * DAY
        with open(state_path, "w") as f:
            json.dump(state, f)
        c.start_node("n2")
        prom.wait("PocketScrubOverdue", lambda: _alert(prom, "PocketScrubOverdue", disk="n2d1"))

        # Two fragments of one object lost, with repair off: at risk, no spare left, repair stalled.
        lost = archives_of(c, "risk", "k0")[:2]
        assert len(lost) == 2 and all("#" not in ref for ref in lost)
        for ref in lost:
            os.unlink(ref)
        _, found = pocket(c, "scrub", "--json", ok=(1,))     # a fresh pass of every disk, as the runbook says
        assert len(found["missing"]) == 2
        prom.wait("PocketObjectsAtRisk", lambda: _alert(prom, "PocketObjectsAtRisk"))
        prom.wait("PocketObjectsWithoutSpare", lambda: _alert(prom, "PocketObjectsWithoutSpare"))
        prom.wait("PocketRepairStalled", lambda: _alert(prom, "PocketRepairStalled"))
        prom.wait("PocketScrubOverdue resolved by that pass",
                  lambda: not _alert(prom, "PocketScrubOverdue"))

        _, fixed = pocket(c, "repair", "--json")              # `pocket repair runs it by hand`
        assert fixed["fragments"] == 2 and fixed["remaining"] == 0
        prom.wait("the durability alerts resolved", lambda: not any(
            _alert(prom, name) for name in ("PocketObjectsAtRisk", "PocketObjectsWithoutSpare", "PocketRepairStalled")))
        for key, body in bodies.items():
            assert s3.get_object(Bucket="risk", Key=key)["Body"].read() == body

        # The index limited to a size just above what it holds: nearly full. A larger limit resolves it.
        n = 0
        while (used := _gateway_metric(c, "pocket_index_used_bytes")) < 240 << 10:   # past 80% of the least limit
            s3.put_object(Bucket="risk", Key=f"small/{n:05d}", Body=payload(64, f"alerts-small-{n}"))
            n += 1
        _set_index_max_size(c, max(256 << 10, int(used / 0.85) // 4096 * 4096))
        assert _gateway_metric(c, "pocket_index_used_bytes") / _gateway_metric(c, "pocket_index_max_bytes") > 0.8
        prom.wait("PocketIndexNearlyFull", lambda: _alert(prom, "PocketIndexNearlyFull"))
        _set_index_max_size(c, None)
        prom.wait("PocketIndexNearlyFull resolved", lambda: not _alert(prom, "PocketIndexNearlyFull"))
        assert s3.get_object(Bucket="risk", Key="k1")["Body"].read() == bodies["k1"]
    finally:
        if prom:
            prom.close()
        c.close()
