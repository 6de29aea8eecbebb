"""`pocket config check`: every problem of a config in one run, one line each naming the key,
without touching anything; with --reach, real nodes are asked whether they answer and share
the cluster secret."""
import os
import signal
import subprocess

from . import forkserver
from .harness import CLUSTER_SECRET, ProcCluster


def _check(*args) -> subprocess.CompletedProcess:
    return forkserver.run(["config", "check", *args], timeout=60)


def test_every_problem_is_listed_once_and_nothing_is_created(tmp_path):
    conf = tmp_path / "pocket.toml"
    conf.write_text("""
data = "."
cluster_secret = "s"
colour = "blue"

[gateway]
listen = "127.0.0.1:9000"
heartbeat = "often"
tls_cert = "missing.crt"
tls_key = "missing.key"

[storage]
default_policy = "fast"

[policies]
fast = "ec:4+2"
bad = "ec:four+2"

[[credentials]]
access_key = "AK"
secret_key = "SK"

[[nodes]]
id = "a"
url = "127.0.0.1:9101"
disks = [{ id = "d1", path = "disks/d1" }]

[[nodes]]
id = "b"
disks = [{ id = "d2", path = "disks/d2" }, { id = "d3", path = "disks/d2" }, { id = "d4", path = "disks/d4" },
         { id = "d5", path = "disks/d5" }, { id = "d6", path = "disks/d6" }, { id = "d7", path = "disks/d7", size = 1 }]
""")
    out = _check("--config", str(conf))
    assert out.returncode == 1
    problems = [line for line in out.stdout.splitlines() if line.startswith("problem: ")]
    # Key-level mistakes come first and alone: the rest cannot be judged without knowing the keys.
    assert any("colour" in p for p in problems) and any("gateway.heartbeat" in p for p in problems)
    assert any("size" in p and "nodes[b].disks[d7]" in p for p in problems)
    assert len(problems) == 3, out.stdout

    conf.write_text(conf.read_text().replace('colour = "blue"\n', "").replace('heartbeat = "often"', "heartbeat = 1.0")
                    .replace(', size = 1', ""))
    out = _check("--config", str(conf))
    assert out.returncode == 1
    problems = [line for line in out.stdout.splitlines() if line.startswith("problem: ")]
    expected = ["cluster_secret is 1 bytes", "policies.bad", "storage.small_policy = 'replica'", "nodes[a].url",
                "disk path", "nodes[b].disks[d2].path", "gateway.tls_cert"]
    for needle in expected:
        assert sum(needle in p for p in problems) >= 1, (needle, out.stdout)
    assert len(problems) >= len(expected) + 4, out.stdout   # d3..d6 missing too
    assert not (tmp_path / "disks").exists() and not (tmp_path / "index").exists()


def test_reach_asks_the_real_nodes(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6).start()
    try:
        out = _check("--config", c.config, "--reach")
        assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stdout + out.stderr
        c.signal("n2", signal.SIGKILL)
        other = os.path.join(c.root, "other-secret.toml")   # beside it: the same relative disk paths
        with open(c.config) as f, open(other, "w") as o:
            o.write(f.read().replace(f'cluster_secret = "{CLUSTER_SECRET}"', f'cluster_secret = "{"x" * 40}"'))
        out = _check("--config", c.config, "--reach")
        assert out.returncode == 1
        problems = [line for line in out.stdout.splitlines() if line.startswith("problem: ")]
        assert len(problems) == 1 and "nodes[n2].url" in problems[0] and "not reachable" in problems[0], out.stdout
        out = _check("--config", other, "--reach", "--node", "n1")
        problems = [line for line in out.stdout.splitlines() if line.startswith("problem: ")]
        assert out.returncode == 1 and sum("cluster_secret differs" in p for p in problems) == 5, out.stdout
        assert len(problems) == 6 and sum("nodes[n2].url" in p for p in problems) == 1   # n1's disk folder is fine
        bad_disk = os.path.join(c.root, "disks", "n1d1")
        os.rename(bad_disk, bad_disk + ".unmounted")
        out = _check("--config", c.config, "--node", "n1")
        assert out.returncode == 1 and f"path = {bad_disk} does not exist" in out.stdout, out.stdout
    finally:
        c.close()
