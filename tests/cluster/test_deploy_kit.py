"""The deploy kit works as written: systemd units that systemd itself accepts, example configs
that `pocket config check` passes, and a compose file whose nodes, zones and addresses agree
with the config it mounts."""
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

from . import forkserver
from .harness import REPO

DEPLOY = os.path.join(REPO, "deploy")
SECRETS = {"POCKET_CLUSTER_SECRET": "c" * 64, "POCKET_ACCESS_KEY": "PKDEPLOYKIT", "POCKET_SECRET_KEY": "s" * 40}


def _check(config: str, *args) -> subprocess.CompletedProcess:
    return forkserver.run(["config", "check", "--config", config, *args], timeout=60, env={**os.environ, **SECRETS})


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: run scripts/install-test-tools"
    pocket = os.path.join(os.path.dirname(sys.executable), "pocket")
    assert os.access(pocket, os.X_OK)
    units = {"pocket-gateway.service": "pocket-gateway.service", "pocket-gateway.socket": "pocket-gateway.socket",
             "pocket-node@.service": "pocket-node@node1.service"}   # a template is verified as an instance
    for src, dst in units.items():
        with open(os.path.join(DEPLOY, "systemd", src)) as f:
            text = f.read()
        assert "ProtectSystem=strict" in text or src.endswith(".socket")
        (tmp_path / dst).write_text(text.replace("/opt/pocket/bin/pocket", pocket))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", *[str(tmp_path / d) for d in units.values()]],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_example_configs_pass_config_check(tmp_path):
    out = _check(os.path.join(DEPLOY, "pocket.toml.example"))
    assert out.returncode == 0, out.stdout
    out = _check(os.path.join(DEPLOY, "compose", "pocket.toml"))
    assert out.returncode == 0, out.stdout
    # One server: its disks are local, so they are checked; give them folders.
    with open(os.path.join(DEPLOY, "examples", "one-server.toml")) as f:
        text = f.read().replace("/srv/pocket", str(tmp_path / "srv"))
    for disk in re.findall(r'path = "([^"]+)"', text):
        os.makedirs(disk)
    (tmp_path / "one-server.toml").write_text(text)
    out = _check(str(tmp_path / "one-server.toml"))
    assert out.returncode == 0, out.stdout


def test_socket_unit_listens_where_the_example_config_says():
    with open(os.path.join(DEPLOY, "systemd", "pocket-gateway.socket")) as f:
        listen = re.search(r"^ListenStream=(\S+)$", f.read(), re.M)[1]
    with open(os.path.join(DEPLOY, "pocket.toml.example"), "rb") as f:
        assert tomllib.load(f)["gateway"]["listen"] == listen


def test_compose_runs_a_gateway_and_six_nodes_in_three_zones():
    with open(os.path.join(DEPLOY, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    with open(os.path.join(DEPLOY, "compose", "pocket.toml"), "rb") as f:
        cfg = tomllib.load(f)
    services = compose["services"]
    nodes = {n["id"]: n for n in cfg["nodes"]}
    assert set(services) == {"gateway", *nodes} and len(nodes) == 6
    zones = {}
    for node_id, node in nodes.items():
        zones.setdefault(node["zone"], []).append(node_id)
        svc = services[node_id]
        assert svc["command"][-3:] == ["--id", node_id, "--init"]
        host, port = re.match(r"http://([^:]+):(\d+)$", node["url"]).groups()
        assert host == node_id   # the service name is the node's host name on the compose network
        mounts = {m.split(":")[1] for m in svc["volumes"]}
        assert {d["path"] for d in node["disks"]} <= mounts and "/etc/pocket/pocket.toml" in mounts
    assert sorted(len(v) for v in zones.values()) == [2, 2, 2]
    gateway = services["gateway"]
    assert gateway["command"][:2] == ["pocket", "gateway"]
    assert any(p.endswith(":" + cfg["gateway"]["listen"].rsplit(":", 1)[1]) for p in gateway["ports"])
    assert "/_pocket/ready" in " ".join(gateway["healthcheck"]["test"])


@pytest.mark.parametrize("path", ["compose.yaml", "compose.single.yaml", "kamal/deploy.yml",
                                  "grafana/provisioning/dashboards/pocket.yaml",
                                  "grafana/provisioning/datasources/pocket.yaml"])
def test_yaml_files_parse(path):
    with open(os.path.join(DEPLOY, path)) as f:
        assert isinstance(yaml.safe_load(f), dict)


def test_grafana_dashboard_uses_the_provisioned_data_source():
    import json
    with open(os.path.join(DEPLOY, "grafana", "provisioning", "datasources", "pocket.yaml")) as f:
        uid = yaml.safe_load(f)["datasources"][0]["uid"]
    with open(os.path.join(DEPLOY, "grafana", "pocket-dashboard.json")) as f:
        dashboard = json.load(f)
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert used == {uid}
