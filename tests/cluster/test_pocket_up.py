"""`pocket up`, the embedded default, as a newcomer uses it."""
import json
import os
import random
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.request

import boto3
import pytest

from . import forkserver
from .harness import free_port_run, wait_for


def _up(data, port, *extra, env=None, timeout=60):
    """`pocket up` with its output (stdout and stderr) on a pipe the test reads, started by the
    fork server (a Popen of the same command where it cannot fork)."""
    read_end, write_end = os.pipe()
    proc = forkserver.spawn(["up", "--data", data, "--port", str(port), *extra], {**os.environ, **(env or {})},
                            write_end, write_end)
    os.close(write_end)
    output = os.fdopen(read_end, "r")
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = output.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops it." in line:
            text = "".join(lines)
            info = {k: re.search(rf"{k}\s*:\s*(\S+)", text).group(1)
                    for k in ("S3 endpoint", "Access key", "Secret key")}
            info["endpoints"] = re.findall(r"S3 endpoint\s*:\s*(\S+)", text)
            # Keep reading its output (one access-log line per request): a full pipe would block it.
            threading.Thread(target=output.read, daemon=True).start()
            return proc, info
    proc.kill()
    raise AssertionError("pocket up did not print its banner:\n" + "".join(lines))


def _client(info, endpoint=None):
    return boto3.client("s3", endpoint_url=endpoint or info["S3 endpoint"], aws_access_key_id=info["Access key"],
                        aws_secret_access_key=info["Secret key"], region_name="us-east-1")


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


@pytest.mark.parametrize("nodes", [0, 3])
def test_up_serves_s3_and_restarts_with_the_same_data(tmp_path, nodes):
    data = str(tmp_path / "pocket-data")
    port = free_port_run(nodes + 1)
    extra = ["--nodes", str(nodes)] if nodes else []
    proc, info = _up(data, port, *extra)
    try:
        assert info["S3 endpoint"] == f"http://127.0.0.1:{port}"
        s3 = _client(info)
        s3.create_bucket(Bucket="first")
        body = os.urandom(3 * 1024 * 1024 + 5)
        s3.put_object(Bucket="first", Key="hello.bin", Body=body)
        assert s3.get_object(Bucket="first", Key="hello.bin")["Body"].read() == body
        s3.put_object(Bucket="first", Key="sealed.bin", Body=body, ServerSideEncryption="AES256")
        assert os.stat(os.path.join(data, "encryption.key")).st_mode & 0o777 == 0o600   # the generated master key
        disks = sorted(os.listdir(os.path.join(data, "disks")))
        assert len(disks) >= 6
    finally:
        _stop(proc)
    for node_port in range(port + 1, port + 1 + nodes):  # node processes went down with it
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", node_port)) != 0
    proc, info2 = _up(data, port, *extra)
    try:
        assert info2["Access key"] == info["Access key"], "keys must be generated once and kept"
        assert _client(info2).get_object(Bucket="first", Key="hello.bin")["Body"].read() == body
        sealed = _client(info2).get_object(Bucket="first", Key="sealed.bin")
        assert sealed["ServerSideEncryption"] == "AES256" and sealed["Body"].read() == body
    finally:
        _stop(proc)


def _exited(pid: int, timeout: float = 10.0) -> bool:
    """Whether the process is gone (pg_ctl stop returns once the server removed its pid file,
    just before it exits, so give it a moment to go)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _argv(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for whoever adopted it to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_up_killed_outright_takes_its_node_processes_with_it(tmp_path):
    """SIGKILL runs no cleanup in `pocket up`: the kernel tells its children (PR_SET_PDEATHSIG),
    so no node keeps serving its disks, or holding its port, for nobody."""
    data = str(tmp_path / "pocket-data")
    port = free_port_run(4)
    proc, info = _up(data, port, "--nodes", "3")
    try:
        _client(info).create_bucket(Bucket="alive")
        children = _children(proc.pid)      # the node processes and the gateway's workers
        nodes = [pid for pid in children if _argv(pid)[3:4] == ["node"]]
        assert len(nodes) == 3 and all(_listening(p) for p in range(port + 1, port + 4))
    finally:
        proc.kill()
        proc.wait()
    try:
        wait_for("the node and worker processes to exit", lambda: all(_gone(pid) for pid in children), timeout=20)
        assert not any(_listening(p) for p in range(port, port + 4)), "a node still listens after pocket up was killed"
    finally:
        for pid in children:       # strays of a failed run are not left behind
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_up_postgres_runs_gateways_over_one_namespace_and_stops_everything(tmp_path):
    """`pocket up --postgres`: its own PostgreSQL under --data, two gateways sharing it and
    the node's disks; a PUT through one is read and listed byte-exact through the other;
    SIGTERM stops gateways, node and PostgreSQL; a second start reuses the database."""
    # Under root PostgreSQL runs as another user, which must reach the folder (pytest's is 0700).
    root = tempfile.mkdtemp(prefix="pocket-up-pg-")
    os.chmod(root, 0o755)
    data = os.path.join(root, "pocket-data")
    port = free_port_run(4)     # two gateways, one node, PostgreSQL
    pidfile = os.path.join(data, "postgres", "data", "postmaster.pid")
    big = random.Random("up-pg-big").randbytes(3 * 1024 * 1024 + 11)      # several segments, erasure-coded
    small = random.Random("up-pg-small").randbytes(5000)                  # replicated, packed
    try:
        proc, info = _up(data, port, "--postgres", timeout=180)
        try:
            assert info["endpoints"] == [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
            one, two = (_client(info, e) for e in info["endpoints"])
            one.create_bucket(Bucket="shared")
            one.put_object(Bucket="shared", Key="dir/big.bin", Body=big)
            one.put_object(Bucket="shared", Key="dir/small.bin", Body=small)
            assert two.get_object(Bucket="shared", Key="dir/big.bin")["Body"].read() == big
            assert two.get_object(Bucket="shared", Key="dir/small.bin")["Body"].read() == small
            listed = two.list_objects_v2(Bucket="shared", Prefix="dir/")["Contents"]
            assert [(o["Key"], o["Size"]) for o in listed] == [("dir/big.bin", len(big)), ("dir/small.bin", len(small))]
            with open(pidfile) as f:
                postmaster = int(f.readline())
            assert not _exited(postmaster, timeout=0)
        finally:
            _stop(proc)
        assert not os.path.exists(pidfile) and _exited(postmaster), "PostgreSQL outlived pocket up"
        assert not any(_listening(p) for p in range(port, port + 4)), "a gateway, node or PostgreSQL still listens"

        proc, info2 = _up(data, port, "--postgres", timeout=180)
        try:
            assert info2["Access key"] == info["Access key"]
            two = _client(info2, info2["endpoints"][1])
            assert two.get_object(Bucket="shared", Key="dir/big.bin")["Body"].read() == big
            with open(pidfile) as f:
                postmaster = int(f.readline())
        finally:
            _stop(proc)
        assert _exited(postmaster), "PostgreSQL outlived the second pocket up"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_up_refuses_several_gateways_without_postgres(tmp_path):
    out = forkserver.run(["up", "--data", str(tmp_path / "d"), "--gateways", "2"], timeout=60)
    assert out.returncode == 2 and "--gateways needs --postgres" in out.stderr
    assert not os.path.exists(tmp_path / "d"), "a refused start must create nothing"


def test_up_takes_credentials_from_the_environment(tmp_path):
    port = free_port_run(1)
    env = {"POCKET_ACCESS_KEY": "MYACCESSKEY", "POCKET_SECRET_KEY": "my-secret-key-1234567890"}
    proc, info = _up(str(tmp_path / "d"), port, env=env)
    try:
        assert info["Access key"] == "MYACCESSKEY" and info["Secret key"] == "my-secret-key-1234567890"
        _client(info).create_bucket(Bucket="env-keys")
    finally:
        _stop(proc)


def test_node_refuses_an_uninitialised_disk_without_init(tmp_path):
    from .harness import ProcCluster
    c = ProcCluster(str(tmp_path / "c"), nodes=6)
    out = forkserver.run(["node", "--config", c.config, "--id", "n1"], timeout=60)
    assert out.returncode != 0 and "is the disk mounted" in out.stderr
    assert not os.path.exists(c.disk_paths["n1d1"])


def test_up_scrubs_its_in_process_disks_and_heals_rot(tmp_path):
    """Disks inside the gateway process get the same disk scrubber as a node's: rot in one
    archive is found there, collected, repaired, and the archive is whole again."""
    data = str(tmp_path / "pocket-data")
    port = free_port_run(1)
    env = {"POCKET_SCRUB_START_DELAY": "0.5", "POCKET_SCRUB_INTERVAL": "1", "POCKET_SCRUB_RATE": "0",
           "POCKET_SCRUB_COLLECT_INTERVAL": "1", "POCKET_REPAIR_INTERVAL": "0.5"}
    proc, info = _up(data, port, env=env)
    try:
        s3 = _client(info)
        s3.create_bucket(Bucket="rot")
        body = os.urandom(3 * 1024 * 1024)
        s3.put_object(Bucket="rot", Key="big", Body=body)
        victim = max((os.path.join(d, f) for d in (os.path.join(data, "disks"),)
                      for d, _, files in os.walk(d) for f in files if "/archives/" in os.path.join(d, f)),
                     key=os.path.getsize)
        with open(victim, "rb") as f:
            original = f.read()
        with open(victim, "r+b") as f:
            f.seek(len(original) // 2)
            f.write(bytes([original[len(original) // 2] ^ 0x40]))
        deadline = time.monotonic() + 60
        while True:
            with open(victim, "rb") as f:
                if f.read() == original:
                    break
            assert time.monotonic() < deadline, "the rotten archive was never rewritten"
            time.sleep(0.3)
        disk = victim.split(os.sep + "disks" + os.sep)[1].split(os.sep)[0]
        assert os.path.exists(os.path.join(data, "disks", disk, "scrub-state.json"))
        with urllib.request.urlopen(info["S3 endpoint"] + "/_pocket/metrics") as r:
            metrics = r.read().decode()
        assert float(re.search(rf'^pocket_node_scrub_corrupt_found_total{{disk="{disk}"}} (\S+)$',
                               metrics, re.M).group(1)) >= 1
        assert s3.get_object(Bucket="rot", Key="big")["Body"].read() == body
    finally:
        _stop(proc)


def _pocket(data, *args):
    out = forkserver.run([*args, "--data", data], timeout=120)
    assert out.returncode == 0, f"pocket {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout)


def _damaged(info) -> float:
    with urllib.request.urlopen(info["S3 endpoint"] + "/_pocket/metrics") as r:
        m = re.search(r"^pocket_fragments_damaged_total (\S+)$", r.read().decode(), re.M)
    return float(m.group(1)) if m else 0.0


def test_one_shot_repair_beside_up_supersedes_a_corrupt_packed_copy(tmp_path):
    """`pocket repair` beside a running `pocket up` cannot append to the packs its disks
    use, so it writes the rebuilt small archive as a file; the owner's disk scrubber finds
    the packed copy corrupt and the file whole, and drops the packed copy: reads get the
    good bytes with no second repair (the gateway's own repairer is off here)."""
    from storage import config, integrity
    from storage.node import packformat
    from .archives import archive_parts, flip_archive_bit, read_archive
    from .harness import CLUSTER_SECRET

    data = str(tmp_path / "pocket-data")
    port = free_port_run(1)
    env = {"POCKET_SCRUB_START_DELAY": "0.5", "POCKET_SCRUB_INTERVAL": "1", "POCKET_SCRUB_RATE": "0",
           "POCKET_SCRUB_COLLECT_INTERVAL": "1", "POCKET_REPAIR_ENABLED": "false"}
    proc, info = _up(data, port, env=env)
    # the test reads the packs itself: with the keys of the secret `pocket up` generated
    integrity.use_secret(config.load(os.path.join(data, "pocket.toml")).cluster_secret)
    try:
        s3 = _client(info)
        s3.create_bucket(Bucket="packed")
        body = os.urandom(20_000)
        s3.put_object(Bucket="packed", Key="small", Body=body)
        refs = [f"{packs}#{name}" for packs in (os.path.join(data, "disks", d, "packs")
                                                 for d in sorted(os.listdir(os.path.join(data, "disks"))))
                for name in packformat.live_archives(packs)]
        victim = next(ref for ref in refs if ref.endswith(".0"))   # the copy a GET reads first
        disk, name = archive_parts(victim)
        packs_dir = victim.split("#")[0]
        original = read_archive(victim)
        flip_archive_bit(victim, len(original) // 2)
        assert s3.get_object(Bucket="packed", Key="small")["Body"].read() == body   # read from another copy

        deadline = time.monotonic() + 60
        while True:   # the owner's scrubber finds the rot, the gateway queues it, the one-shot repairs it
            report = _pocket(data, "repair", "--json")
            assert not report["failed"], report["failed"]
            if report["repaired"]:
                break
            assert time.monotonic() < deadline, "the corrupt packed copy was never queued for repair"
            time.sleep(0.5)
        assert [r["indexes"] for r in report["repaired"]] == [[0]]
        repaired_file = os.path.join(data, "disks", disk, "archives", name[30:32], name)
        with open(repaired_file, "rb") as f:
            assert f.read() == original

        deadline = time.monotonic() + 30
        while name in packformat.live_archives(packs_dir):   # the owner drops the corrupt packed copy
            assert time.monotonic() < deadline, "the corrupt packed copy still shadows the repaired file"
            time.sleep(0.3)
        adopted = time.time()
        damaged = _damaged(info)
        for _ in range(5):
            assert s3.get_object(Bucket="packed", Key="small")["Body"].read() == body
        assert _damaged(info) == damaged, "reads still meet the corrupt copy"
        deadline = time.monotonic() + 60
        while True:   # a collection that began after the adoption has finished: it queued nothing again
            status = _pocket(data, "status", "--json")
            scrub = status["last_scrub"] or {}
            if scrub.get("started", 0) > adopted and not scrub.get("running"):
                break
            assert time.monotonic() < deadline, f"no scrub collection finished since the adoption: {scrub}"
            time.sleep(0.3)
        assert status["repair_queue"] == 0, status["at_risk"]
        assert _pocket(data, "repair", "--json")["repaired"] == []
    finally:
        integrity.use_secret(CLUSTER_SECRET)
        _stop(proc)
