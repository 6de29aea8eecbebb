"""Unit tests for storage.config: the TOML file, env overrides, validation."""
from __future__ import annotations

import os
import stat
import textwrap

import pytest

from storage import config
from storage.config import ConfigError, apply_env, from_dict, load
from storage.config_embedded import embedded


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("POCKET_"):
            monkeypatch.delenv(key)


def _nodes(n_disks: int, per_node: int = 0, dup: str | None = None) -> str:
    per_node = per_node or n_disks
    out, made = [], 0
    node = 0
    while made < n_disks:
        node += 1
        ids = [f"d{made + i + 1}" for i in range(min(per_node, n_disks - made))]
        made += len(ids)
        if dup and node == 1:
            ids[-1] = dup
        disks = ", ".join(f'{{ id = "{d}", path = "disks/{d}" }}' for d in ids)
        out.append(f'[[nodes]]\nid = "n{node}"\nzone = "z{node}"\ndisks = [{disks}]\n')
    return "\n".join(out)


def write(tmp_path, body: str, name="pocket.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


BASE = """\
cluster_secret = "cluster-secret-of-at-least-32-bytes-0001"

[[credentials]]
access_key = "AK"
secret_key = "SK"
"""


def good(tmp_path, extra_top="", sections="", disks=6) -> str:
    return write(tmp_path, extra_top + BASE + sections + "\n" + _nodes(disks, 2))


# embedded ------------------------------------------------------------------------------

def test_embedded_writes_private_loadable_file_and_reuses_it(tmp_path):
    data = tmp_path / "data"
    path = embedded(str(data), 9123)
    assert os.path.dirname(path) == str(data)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    cfg = load(path)
    assert cfg.listen == ("127.0.0.1", 9123)
    assert len(cfg.credentials) == 1
    assert cfg.credentials[0].access_key and cfg.credentials[0].secret_key
    assert len(cfg.cluster_secret) >= 32
    disks = [d for n in cfg.nodes for d in n.disks]
    assert len(disks) == 6
    assert len({d.id for d in disks}) == 6
    for d in disks:  # disk folders live under the data folder
        assert os.path.abspath(d.path).startswith(os.path.abspath(data) + os.sep)
    assert os.path.abspath(cfg.data) == os.path.abspath(data)
    assert os.path.abspath(cfg.index_path).startswith(os.path.abspath(data))

    with open(path) as f:
        text = f.read()
    again = embedded(str(data), 9999)
    assert again == path
    with open(path) as f:
        assert f.read() == text
    cfg2 = load(again)
    assert cfg2.cluster_secret == cfg.cluster_secret
    assert cfg2.credentials == cfg.credentials
    assert cfg2.listen == ("127.0.0.1", 9123)

    # a different folder gets different secrets
    other = load(embedded(str(tmp_path / "other"), 9123))
    assert other.cluster_secret != cfg.cluster_secret
    assert other.credentials[0].secret_key != cfg.credentials[0].secret_key


def test_embedded_with_node_processes(tmp_path):
    cfg = load(embedded(str(tmp_path / "data"), 9200, nodes=3, disks=6))
    assert [n.id for n in cfg.nodes] == ["node1", "node2", "node3"]
    assert [n.listen for n in cfg.nodes] == [("127.0.0.1", 9201), ("127.0.0.1", 9202), ("127.0.0.1", 9203)]
    assert sum(len(n.disks) for n in cfg.nodes) >= 6
    assert cfg.node("node2").url == "http://127.0.0.1:9202"
    with pytest.raises(ConfigError, match="node9"):
        cfg.node("node9")


def test_embedded_for_postgres_puts_gateways_then_nodes_then_the_database(tmp_path):
    """`pocket up --postgres`: one port each, in order, and more gateways on a later start
    skip the ports the nodes and PostgreSQL already have."""
    from urllib.parse import urlsplit

    from cli.serve import _gateway_ports
    cfg = load(embedded(str(tmp_path / "data"), 9200, nodes=2, disks=6, gateways=2, postgres=True))
    assert cfg.listen == ("127.0.0.1", 9200)
    assert [n.url for n in cfg.nodes] == ["http://127.0.0.1:9202", "http://127.0.0.1:9203"]
    dsn = urlsplit(cfg.index.dsn)
    assert cfg.index.backend == "postgres" and (dsn.hostname, dsn.port, dsn.path) == ("127.0.0.1", 9204, "/pocket")
    assert len(dsn.password) >= 32, "the database's password is generated, not left open"
    assert _gateway_ports(cfg, 2) == [9200, 9201]
    assert _gateway_ports(cfg, 4) == [9200, 9201, 9205, 9206]


# load + env ----------------------------------------------------------------------------

def test_load_good_file(tmp_path):
    path = good(tmp_path, sections='[storage]\nsegment_size = 65536\ndefault_policy = "ec"\n'
                                   '[gateway]\nlisten = "0.0.0.0:9100"\n')
    cfg = load(path)
    assert cfg.storage.segment_size == 65536
    assert cfg.listen == ("0.0.0.0", 9100)
    assert cfg.policies == {"ec": "ec:4+2", "replica": "replica:3"}
    assert [d.id for n in cfg.nodes for d in n.disks] == [f"d{i}" for i in range(1, 7)]
    assert cfg.nodes[0].disks[0].path == os.path.join(str(tmp_path), "disks/d1")


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError):
        load(write(tmp_path, "this is = = not toml"))


def test_env_overrides_apply(tmp_path):
    cfg = from_dict({})
    env = {
        "POCKET_STORAGE_SEGMENT_SIZE": "262144",
        "POCKET_GATEWAY_LISTEN": "0.0.0.0:9555",
        "POCKET_GATEWAY_HEARTBEAT": "0.5",
        "POCKET_ACCESS_KEY": "ENVAK",
        "POCKET_SECRET_KEY": "ENVSK",
        "POCKET_CLUSTER_SECRET": "from-env",
    }
    out = apply_env(cfg, env)
    assert out.storage.segment_size == 262144
    assert isinstance(out.storage.segment_size, int)
    assert out.gateway.listen == "0.0.0.0:9555"
    assert out.listen == ("0.0.0.0", 9555)
    assert out.gateway.heartbeat == 0.5
    assert out.cluster_secret == "from-env"
    assert [(c.access_key, c.secret_key) for c in out.credentials] == [("ENVAK", "ENVSK")]


def test_client_limits_have_defaults_and_env_overrides():
    cfg = from_dict({})
    assert (cfg.gateway.header_timeout, cfg.gateway.body_timeout, cfg.gateway.body_min_rate,
            cfg.gateway.max_uploads) == (60.0, 60.0, 500, 128)
    out = apply_env(cfg, {"POCKET_GATEWAY_HEADER_TIMEOUT": "5", "POCKET_GATEWAY_BODY_TIMEOUT": "7.5",
                          "POCKET_GATEWAY_BODY_MIN_RATE": "2048", "POCKET_GATEWAY_MAX_UPLOADS": "16"})
    assert (out.gateway.header_timeout, out.gateway.body_timeout, out.gateway.body_min_rate,
            out.gateway.max_uploads) == (5.0, 7.5, 2048, 16)


def test_env_credentials_take_precedence_over_file(tmp_path):
    cfg = from_dict({"credentials": [{"access_key": "AK", "secret_key": "SK"},
                                     {"access_key": "ENVAK", "secret_key": "old"}]})
    out = apply_env(cfg, {"POCKET_ACCESS_KEY": "ENVAK", "POCKET_SECRET_KEY": "new"})
    assert [(c.access_key, c.secret_key) for c in out.credentials] == [("ENVAK", "new"), ("AK", "SK")]
    # only one of the pair: ignored
    out = apply_env(from_dict({}), {"POCKET_ACCESS_KEY": "X"})
    assert out.credentials == []


def test_env_overrides_reach_load(tmp_path, monkeypatch):
    path = good(tmp_path)
    monkeypatch.setenv("POCKET_REPAIR_FAILED_AFTER", "60")
    monkeypatch.setenv("POCKET_STORAGE_SEGMENT_SIZE", "131072")
    monkeypatch.setenv("POCKET_GATEWAY_LISTEN", "127.0.0.1:9777")
    cfg = load(path)
    assert cfg.storage.segment_size == 131072
    assert cfg.listen == ("127.0.0.1", 9777)
    assert cfg.repair.failed_after == 60.0 and config.Config().repair.failed_after == 900.0


def test_rates_have_env_overrides(tmp_path):
    out = apply_env(from_dict({}), {"POCKET_REPAIR_RATE": "1048576", "POCKET_SCRUB_RATE": "0",
                                    "POCKET_SCRUB_COLLECT_INTERVAL": "60"})
    assert (out.repair.rate, out.scrub.rate, out.scrub.collect_interval) == (1 << 20, 0, 60.0)
    assert from_dict({}).repair.rate == 0          # unlimited unless asked
    with pytest.raises(ConfigError, match="POCKET_REPAIR_RATE"):
        apply_env(from_dict({}), {"POCKET_REPAIR_RATE": "1MiB"})


def test_empty_env_changes_nothing():
    cfg = from_dict({})
    before = (cfg.storage.segment_size, cfg.gateway.listen, cfg.cluster_secret, cfg.credentials)
    apply_env(cfg, {})
    assert (cfg.storage.segment_size, cfg.gateway.listen, cfg.cluster_secret, cfg.credentials) == before


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="POCKET_STORAGE_SEGMENT_SIZE"):
        apply_env(from_dict({}), {"POCKET_STORAGE_SEGMENT_SIZE": "1MB"})
    with pytest.raises(ConfigError, match="POCKET_GATEWAY_HEARTBEAT"):
        apply_env(from_dict({}), {"POCKET_GATEWAY_HEARTBEAT": "fast"})


# validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("body,key", [
    ("colour = 'red'\n" + BASE, "colour"),
    (BASE + "[storage]\nsegment_sise = 4096\n", "segment_sise"),
    (BASE + "[gateway]\nlisten_addr = '1.2.3.4:5'\n", "listen_addr"),
    (BASE + "[[credentials]]\naccess_key = 'a'\nsecret_key = 'b'\nregion = 'x'\n", "region"),
    # a typo inside a node or disk entry must not be silently dropped (zone => placement)
    (BASE + "[[nodes]]\nid = 'n1'\nzon = 'z2'\ndisks = []\n", "zon"),
    (BASE + "[[nodes]]\nid = 'n1'\ndisks = [{ id = 'dx', path = 'p', size = 3 }]\n", "size"),
], ids=["top", "storage", "gateway", "credentials", "node", "disk"])
def test_unknown_keys_are_refused_by_name(tmp_path, body, key):
    path = write(tmp_path, body + "\n" + _nodes(6, 2))
    with pytest.raises(ConfigError) as e:
        load(path)
    assert key in str(e.value)


@pytest.mark.parametrize("spec", ["ec:4", "ec:x+y", "raid:5", "ec4+2", "replica:", "ec:0+2", "replica:0"])
def test_bad_policy_spec_is_refused_by_name(tmp_path, spec):
    path = good(tmp_path, sections=f'[policies]\nec = "ec:4+2"\nreplica = "replica:3"\nweird = "{spec}"\n')
    with pytest.raises(ConfigError) as e:
        load(path)
    assert "policies.weird" in str(e.value)


def test_default_policy_that_does_not_exist(tmp_path):
    path = good(tmp_path, sections='[storage]\ndefault_policy = "gold"\n')
    with pytest.raises(ConfigError) as e:
        load(path)
    assert "storage.default_policy" in str(e.value) and "gold" in str(e.value)
    path = good(tmp_path, sections='[storage]\nsmall_policy = "tiny"\n')
    with pytest.raises(ConfigError, match="storage.small_policy"):
        load(path)


def test_too_few_disks_for_widest_policy(tmp_path):
    path = write(tmp_path, BASE + '[policies]\nec = "ec:4+2"\nreplica = "replica:3"\nwide = "ec:10+4"\n\n'
                 + _nodes(8, 2))
    with pytest.raises(ConfigError) as e:
        load(path)
    msg = str(e.value)
    assert "14" in msg and "8" in msg
    # the default 4+2 with only 5 disks
    with pytest.raises(ConfigError, match="6"):
        load(good(tmp_path, disks=5))


def test_duplicate_disk_ids(tmp_path):
    path = write(tmp_path, BASE + _nodes(6, 3, dup="d4"))
    with pytest.raises(ConfigError) as e:
        load(path)
    assert "disk" in str(e.value) and "d4" in str(e.value), \
        f"the message should name the duplicated disk id: {e.value}"


@pytest.mark.parametrize("body,needle", [
    (BASE.replace('cluster_secret = "cluster-secret-of-at-least-32-bytes-0001"', ""), "cluster_secret"),
    ('cluster_secret = "cluster-secret-of-at-least-32-bytes-0001"\n', "credentials"),
    (BASE.replace('cluster_secret = "%s"' % "cluster-secret-of-at-least-32-bytes-0001", 'cluster_secret = "31-bytes-is-one-too-few-0123456"'),
     "at least 32 bytes"),
    (BASE + "[[nodes]]\nid = \"t\"\nurl = \"https://127.0.0.1:1\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
     "tls_fingerprint"),
    (BASE + "[[nodes]]\nid = \"t\"\nurl = \"http://127.0.0.1:1\"\ntls_fingerprint = \"ab\"\n", "https://"),
    (BASE + "[storage]\nsegment_size = 100\n", "segment_size"),
    (BASE + "[storage]\nsegment_size = 'big'\n", "storage.segment_size"),
    (BASE + "[gateway]\nheartbeat = 'often'\n", "gateway.heartbeat"),
    (BASE + "[storage]\npack_threshold = -1\n", "storage.pack_threshold"),
    (BASE + "[storage]\npack_size = 4096\n", "storage.pack_size"),
    (BASE + "[storage]\npack_threshold = 134217728\n", "storage.pack_threshold"),
    (BASE + "[storage]\ncompact_interval = -5\n", "storage.compact_interval"),
    (BASE + "[repair]\nrate = -1\n", "repair.rate"),
    (BASE + "[repair]\nrate = 'fast'\n", "repair.rate"),
    (BASE + "[scrub]\nrate = -1\n", "scrub.rate"),
    (BASE + "[scrub]\ncollect_interval = -1\n", "scrub.collect_interval"),
    (BASE + "[repair]\nfailed_after = 0\n", "repair.failed_after"),
    (BASE + "[repair]\nfailed_after = 'soon'\n", "repair.failed_after"),
    (BASE + "[repair]\nmove_rate = -1\n", "repair.move_rate"),
    (BASE + "[scrub]\norphan_grace = 0\n", "scrub.orphan_grace = 0 is below 10 s"),
], ids=["no-secret", "no-credentials", "short-secret", "https-unpinned", "tls-without-https", "small-segment", "segment-not-int", "heartbeat-not-float",
        "negative-pack-threshold", "tiny-packs", "threshold-above-pack-size", "negative-compact-interval",
        "negative-repair-rate", "repair-rate-not-int", "negative-scrub-rate", "negative-collect-interval",
        "zero-failed-after", "failed-after-not-float", "negative-move-rate", "orphan-grace-below-floor"])
def test_other_invalid_settings_name_the_key(tmp_path, body, needle):
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, body + "\n" + _nodes(6, 2)))
    assert needle in str(e.value)


def test_config_error_is_value_error():
    assert issubclass(config.ConfigError, ValueError)


def test_pocket_users_adds_credentials(tmp_path):
    from storage import config as cfgmod
    cfg = cfgmod.load(embedded(str(tmp_path / "d"), 9000))
    cfgmod.apply_env(cfg, {"POCKET_USERS": "AK1:SK1, AK2:SK2"})
    assert [(c.access_key, c.secret_key) for c in cfg.credentials][-2:] == [("AK1", "SK1"), ("AK2", "SK2")]
    with pytest.raises(cfgmod.ConfigError):
        cfgmod.apply_env(cfg, {"POCKET_USERS": "nocolon"})


def test_paths_are_relative_to_the_config_file(tmp_path):
    from storage import config as cfgmod
    path = tmp_path / "etc" / "pocket.toml"
    path.parent.mkdir()
    path.write_text('data = "../data"\ncluster_secret = "cluster-secret-of-at-least-32-bytes-0001"\n[gateway]\nindex = "meta/index"\n'
                    '[[credentials]]\naccess_key = "a"\nsecret_key = "b"\n'
                    '[[nodes]]\nid = "n"\ndisks = [' + ", ".join(f'{{ id = "d{i}", path = "disks/d{i}" }}'
                                                                for i in range(6)) + "]\n")
    cfg = cfgmod.load(str(path))
    assert cfg.index_path == str(tmp_path / "etc" / "meta" / "index")
    assert cfg.data == str(tmp_path / "data")
    assert cfg.nodes[0].disks[0].path == str(tmp_path / "etc" / "disks" / "d0")


def test_lifecycle_section_defaults_file_env_and_validation(tmp_path, monkeypatch):
    cfg = load(good(tmp_path))
    assert (cfg.lifecycle.interval, cfg.lifecycle.rate, cfg.lifecycle.day_seconds) == (3600.0, 100.0, 86400.0)
    monkeypatch.setenv("POCKET_LIFECYCLE_DAY_SECONDS", "1")
    monkeypatch.setenv("POCKET_LIFECYCLE_INTERVAL", "0")
    cfg = load(good(tmp_path))
    assert (cfg.lifecycle.interval, cfg.lifecycle.day_seconds) == (0.0, 1.0)
    monkeypatch.setenv("POCKET_LIFECYCLE_DAY_SECONDS", "0")
    with pytest.raises(ConfigError, match="lifecycle.day_seconds"):
        load(good(tmp_path))
    monkeypatch.delenv("POCKET_LIFECYCLE_DAY_SECONDS")
    monkeypatch.setenv("POCKET_LIFECYCLE_RATE", "-1")
    with pytest.raises(ConfigError, match="lifecycle.rate"):
        load(good(tmp_path))
    monkeypatch.setenv("POCKET_LIFECYCLE_RATE", "lots")
    with pytest.raises(ConfigError, match="POCKET_LIFECYCLE_RATE"):
        load(good(tmp_path))
    with pytest.raises(ConfigError, match="lifecycle.every"):
        from_dict({"lifecycle": {"every": 5}})


def test_disk_capacity_quota(tmp_path):
    body = BASE + "\n" + _nodes(6, 2).replace('path = "disks/d1" }', 'path = "disks/d1", capacity = 1048576 }')
    cfg = load(write(tmp_path, body))
    assert [d.capacity for n in cfg.nodes for d in n.disks] == [1 << 20, 0, 0, 0, 0, 0]
    bad = BASE + "\n" + _nodes(6, 2).replace('path = "disks/d1" }', 'path = "disks/d1", capacity = -5 }')
    with pytest.raises(ConfigError, match=r"disks\[d1\]\.capacity"):
        load(write(tmp_path, bad))


def test_node_processes_default_to_cores_but_never_more_than_disks(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    body = BASE + "\n" + _nodes(6, 3).replace('id = "n2"\n', 'id = "n2"\nprocesses = 2\n')
    cfg = load(write(tmp_path, body))
    assert [n.process_count for n in cfg.nodes] == [3, 2]       # 3 disks on 16 cores; as set
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert cfg.nodes[0].process_count == 2
    bad = BASE + "\n" + _nodes(6, 3).replace('id = "n1"\n', 'id = "n1"\nprocesses = -1\n')
    with pytest.raises(ConfigError, match=r"nodes\[n1\]\.processes"):
        load(write(tmp_path, bad))


def test_workers_default_one_per_core_but_one_with_in_process_disks(tmp_path, monkeypatch):
    """0 = one per core for a gateway over node processes; one process for the embedded
    shape, whose in-process disks would otherwise be served to the workers over loopback."""
    from storage.config import load
    from storage.config_embedded import embedded
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert load(embedded(str(tmp_path / "a"), 9000)).workers == 1
    assert load(embedded(str(tmp_path / "b"), 9100, nodes=6)).workers == 8
    monkeypatch.setenv("POCKET_GATEWAY_WORKERS", "3")
    assert load(embedded(str(tmp_path / "c"), 9200)).workers == 3
