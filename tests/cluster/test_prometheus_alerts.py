"""The durability and capacity alerts of deploy/alerts.yml, proven on a real Prometheus over a
real cluster (test_prometheus.py proves node down, disk down and disk nearly full): objects
at risk and one failure from loss when fragments are lost, repair stalled while repair is
off, a disk's scrub overdue, and the index nearly full; each resolves when an operator does
what its description says; and the migration journal growing while a migrating bucket's
other side is unreachable, with the dashboard's migration panels answering. One cluster and one Prometheus serve every check, in an order
where each leaves the next a working cluster. The rules are the shipped ones with `for:`
shortened (test_prometheus.Prometheus) and the journal's threshold lowered, so promtool's
check of deploy/alerts.yml covers them."""
import json
import os
import re
import signal
import threading
import time
import urllib.request

import pytest

from . import sources
from .archives import archives_of
from .conftest import payload
from .harness import ProcCluster, pocket
from .sources import SourceLink
from .test_prometheus import Prometheus, _alert, _dashboard_queries, _tools  # noqa: F401  (_tools: autouse)

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)

DAY = 86400
MOVING = "moving"
JOURNAL_ALERT_AT = 1000     # deploy/alerts.yml PocketMigrationJournalGrowing: more than this many entries
# ... lowered in the rules under test, as `for:` is shortened (the expression and labels stay the
# shipped ones): a thousand PUTs owed to a cut-off source were a quarter of the test's time
JOURNAL_TESTED_AT = 100


def _gateway_metric(c: ProcCluster, name: str) -> float:
    with urllib.request.urlopen(f"{c.endpoint}/_pocket/metrics", timeout=10) as r:
        text = r.read().decode()
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)[1])


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


def _migrate(c: ProcCluster, *args) -> dict:
    return pocket(c, "migrate", *args, "--json")[1]


def _small_puts(s3, bucket: str, prefix: str, first: int, n: int, threads: int = 4) -> None:
    """PUTs of 64-byte objects `prefix`/first.. from a few threads: a sequence of them paid a
    round trip each, for seconds of the test (journal entries, an index filling up)."""
    errors = []

    def write(part: int) -> None:
        try:
            for i in range(first + part, first + n, threads):
                s3.put_object(Bucket=bucket, Key=f"{prefix}/{i:05d}", Body=payload(64, f"alerts-{prefix}-{i}"))
        except Exception as e:
            errors.append(e)
    workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(600)
    assert not errors, errors[:3]


def test_durability_and_capacity_alerts_fire_and_resolve(tmp_path, monkeypatch):
    source = sources.start_moto(str(tmp_path / "source"))
    link = SourceLink(int(source.endpoint.rsplit(":", 1)[1]))
    for name, value in {**source.credentials_env(), **SourceLink.ENV}.items():   # the gateway's AWS chain
        monkeypatch.setenv(name, value)
    try:
        _alerts(tmp_path, source, link)
    finally:
        link.close()
        source.close()


def _alerts(tmp_path, source, link) -> None:
    c = ProcCluster(str(tmp_path / "cluster"),
                    # disks scrub themselves once at start, then not for 5 days: a pass overdue
                    # stays overdue until someone asks for one
                    sections={"scrub": {"start_delay": 0.2, "interval": 5 * DAY, "collect_interval": 1.0},
                              "repair": {"enabled": False}})
    prom = Prometheus(str(tmp_path), c, rule_edits={   # before the cluster: see Prometheus
        f"pocket_migrate_journal_entries > {JOURNAL_ALERT_AT}\n": f"pocket_migrate_journal_entries > {JOURNAL_TESTED_AT}\n"})
    try:
        c.start()
        prom.wait_scraping()
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
            _small_puts(s3, "risk", "small", n, 100)
            n += 100
        _set_index_max_size(c, max(256 << 10, int(used / 0.85) // 4096 * 4096))
        assert _gateway_metric(c, "pocket_index_used_bytes") / _gateway_metric(c, "pocket_index_max_bytes") > 0.8
        prom.wait("PocketIndexNearlyFull", lambda: _alert(prom, "PocketIndexNearlyFull"))
        _set_index_max_size(c, None)
        prom.wait("PocketIndexNearlyFull resolved", lambda: not _alert(prom, "PocketIndexNearlyFull"))
        assert s3.get_object(Bucket="risk", Key="k1")["Body"].read() == bodies["k1"]

        # A migrated bucket past cutover whose source stops answering: every write is owed to it.
        src = source.client()
        src.create_bucket(Bucket=MOVING)
        for i in range(3):
            src.put_object(Bucket=MOVING, Key=f"old/{i}", Body=payload(5000, f"moving-{i}"))
        where = ("--source-endpoint", link.endpoint, "--source-addressing", "path")
        _migrate(c, "plan", MOVING, *where)      # the progress panel divides by what the plan counted
        _migrate(c, "enable", MOVING, *where)
        _migrate(c, "copy", MOVING)
        _migrate(c, "verify", MOVING)
        assert _migrate(c, "cutover", MOVING)["buckets"][0]["state"] == "cutover"
        link.cut()
        _small_puts(s3, MOVING, "owed", 0, JOURNAL_TESTED_AT + 20)   # each a journal entry: the source is cut off
        prom.wait("PocketMigrationJournalGrowing",
                  lambda: _alert(prom, "PocketMigrationJournalGrowing", bucket=MOVING), timeout=60)
        for expr in _dashboard_queries():        # the migration panels have a bucket to show now
            if "pocket_migrate_" in expr:
                prom.wait(f"data for {expr}", lambda: prom.query(expr), timeout=30)
        link.restore()
        prom.wait("PocketMigrationJournalGrowing resolved as the journal drains",
                  lambda: not _alert(prom, "PocketMigrationJournalGrowing"), timeout=180)
        assert _gateway_metric(c, f'pocket_migrate_journal_entries{{bucket="{MOVING}"}}') <= JOURNAL_TESTED_AT
    finally:
        prom.close()
        c.close()
