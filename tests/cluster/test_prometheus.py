"""The dashboard and the alert rules in deploy/, proven on a real Prometheus scraping a real
cluster: every dashboard query returns data, the rules load, and alerts fire when a node is
killed or a disk fills up, and resolve when they recover.

Prometheus is Debian's package (scripts/install-test-tools installs it). The rules are
deploy/alerts.yml with every `for:` shortened to a second, so the test waits seconds, not
the minutes an operator's copy waits."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from .harness import REPO, ProcCluster, free_ports

DEPLOY = os.path.join(REPO, "deploy")
# Metrics with data only while a bucket is being migrated: this cluster migrates none, so
# test_prometheus_alerts.py, whose cluster migrates one, waits for data from these panels.
PENDING = ("pocket_migrate_",)


def _body(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture(autouse=True)
def _tools():
    missing = [t for t in ("prometheus", "promtool") if not shutil.which(t)]
    assert not missing, f"{missing} not installed: run scripts/install-test-tools (make test does)"


def test_promtool_accepts_the_rules_and_the_scrape_config():
    for args in (["check", "rules", os.path.join(DEPLOY, "alerts.yml")],
                 ["check", "config", os.path.join(DEPLOY, "prometheus.yml")]):
        out = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


class Prometheus:
    """A Prometheus scraping `cluster` with the shipped rules (`for:` shortened to 1 s).

    Start it before the cluster (whose ports are known once it is constructed): Prometheus
    2.42 takes up its targets at the first reload of its scrape manager, 5 s after it
    starts, and the cluster's start-up overlaps that wait instead of adding to it.
    `rule_edits`: text of the shipped rules replaced in the copy under test (a threshold
    a test cannot reach in seconds); each must still be in the shipped file."""

    def __init__(self, root: str, cluster: ProcCluster, rule_edits: dict[str, str] | None = None):
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        with open(os.path.join(DEPLOY, "alerts.yml")) as f:
            rules = re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 1s", f.read())
        for shipped, tested in (rule_edits or {}).items():
            assert shipped in rules, f"{shipped!r} is no longer in deploy/alerts.yml: update the test"
            rules = rules.replace(shipped, tested)
        with open(os.path.join(root, "alerts.yml"), "w") as f:
            f.write(rules)
        with open(os.path.join(DEPLOY, "prometheus.yml")) as f:
            deployed = yaml.safe_load(f)
        jobs = {job["job_name"]: job for job in deployed["scrape_configs"]}
        gateway_target = f"127.0.0.1:{cluster.port}"
        node_targets = [f"127.0.0.1:{cluster.node_ports[n]}" for n in cluster.node_ids]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [   # the deployed jobs (names, paths), pointed at this cluster
                {**jobs["pocket-gateway"], "static_configs": [{"targets": [gateway_target]}]},
                {**jobs["pocket-node"], "static_configs": [{"targets": node_targets}]},
            ],
        }
        with open(os.path.join(root, "prometheus.yml"), "w") as f:
            yaml.safe_dump(config, f)
        self.log = open(os.path.join(root, "prometheus.log"), "ab")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={root}/prometheus.yml", f"--storage.tsdb.path={root}/tsdb",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=self.log, cwd=root)
        self.targets = [gateway_target, *node_targets]

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list:
        return self.api("query", query=expr)["result"]

    def firing(self) -> list[dict]:
        return [a["labels"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"]

    def wait(self, what: str, condition, timeout: float = 90.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = condition()
            except (OSError, ValueError):   # not listening yet
                result = None
            if result:
                return result
            assert self.proc.poll() is None, "prometheus exited; see prometheus.log"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.25)

    def wait_scraping(self) -> None:
        self.wait("every target scraped", lambda: {t["labels"]["instance"] for t in self.api("targets")["activeTargets"]
                                                   if t["health"] == "up"} == set(self.targets))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _alert(prom: Prometheus, name: str, **labels) -> bool:
    return any(a["alertname"] == name and all(a.get(k) == v for k, v in labels.items()) for a in prom.firing())


def _dashboard_queries() -> list[str]:
    with open(os.path.join(DEPLOY, "grafana", "pocket-dashboard.json")) as f:
        dashboard = json.load(f)
    return [t["expr"].replace("$__rate_interval", "15s")
            for panel in dashboard["panels"] for t in panel.get("targets", [])]


def _node_disk_ratio(c: ProcCluster, node: str, disk: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{c.node_ports[node]}/metrics", timeout=10) as r:
        text = r.read().decode()
    value = {name: float(re.search(rf'^pocket_node_disk_{name}_bytes{{disk="{disk}"}} (\S+)$', text, re.M)[1])
             for name in ("free", "capacity")}
    return value["free"] / value["capacity"]


def test_dashboard_queries_return_data_and_alerts_fire_and_resolve(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), capacity={"n6d1": 8 << 20},
                    storage={"min_free_bytes": 0},
                    sections={"scrub": {"start_delay": 0.5, "collect_interval": 2.0},
                              "repair": {"interval": 1.0}})
    prom = Prometheus(str(tmp_path), c)    # before the cluster: see Prometheus
    try:
        c.start()
        prom.wait_scraping()
        s3 = c.client()
        s3.create_bucket(Bucket="watched")
        for i, size in enumerate((2_000, 90_000, 1_500_000)):
            s3.put_object(Bucket="watched", Key=f"k{i}", Body=_body(size, i))
            assert s3.get_object(Bucket="watched", Key=f"k{i}")["Body"].read() == _body(size, i)
        with pytest.raises(Exception):
            s3.get_object(Bucket="watched", Key="missing")

        # A node dies: its alerts fire, and writes meanwhile leave objects at risk for the dashboard.
        c.signal("n1", signal.SIGKILL)
        victim = f"127.0.0.1:{c.node_ports['n1']}"
        for i in range(3, 6):
            s3.put_object(Bucket="watched", Key=f"k{i}", Body=_body(1_200_000, i))
        prom.wait("PocketNodeDown", lambda: _alert(prom, "PocketNodeDown", instance=victim))
        prom.wait("PocketDiskDown", lambda: _alert(prom, "PocketDiskDown", disk="n1d1"))

        names = set(prom.api("label/__name__/values"))
        for expr in _dashboard_queries():
            metrics = set(re.findall(r"\b(?:pocket|process)_[a-z0-9_]+", expr))
            if any(m.startswith(PENDING) for m in metrics):
                continue
            assert metrics <= names, f"{expr} names metrics nobody exports: {metrics - names}"
            prom.wait(f"data for {expr}", lambda: prom.query(expr), timeout=30)

        c.start_node("n1")
        prom.wait("PocketNodeDown and PocketDiskDown resolved",
                  lambda: not _alert(prom, "PocketNodeDown") and not _alert(prom, "PocketDiskDown"))

        # A disk fills up (its capacity quota): PocketDiskNearlyFull fires; deleting resolves it.
        filler = []
        for i in range(40):
            if _node_disk_ratio(c, "n6", "n6d1") < 0.10:
                break
            key = f"fill/{i}"
            s3.put_object(Bucket="watched", Key=key, Body=_body(2 << 20, 100 + i))
            filler.append(key)
        assert _node_disk_ratio(c, "n6", "n6d1") < 0.10
        prom.wait("PocketDiskNearlyFull", lambda: _alert(prom, "PocketDiskNearlyFull", disk="n6d1"))
        s3.delete_objects(Bucket="watched", Delete={"Objects": [{"Key": k} for k in filler]})
        prom.wait("PocketDiskNearlyFull resolved", lambda: not _alert(prom, "PocketDiskNearlyFull"), timeout=120)
    finally:
        prom.close()
        c.close()
