"""A node of several processes (storage/node/processes.py) is one node to the gateway.

Two nodes of three disks, each served by three processes that own one disk apiece, so
two of every three requests for a disk land on a process that does not own it and are
served there (archive files) or sent on to its owner (everything else). The tests check
what a user and an operator would: bytes read back through the gateway are the bytes
written, whatever the size (packed, filed, several segments) and however many writers;
a process killed under load loses nothing acknowledged and is started again; a captured
node request replayed on a new connection is refused whichever process takes it; the
node's /metrics and health cover every disk; one-shot commands see the disks owned.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from storage.node import auth
from storage.node.ownership import LOCK_FILE, DiskInUse, own

from .archives import archives_of
from .conftest import payload
from .harness import CLUSTER_SECRET, QUIET, ProcCluster, pocket, process_tree, wait_for
from .rawhttp import read_answer
from .signing import sign
from .writers import Writers

PROCESSES = 3
SEGMENT = 1 << 20


def _cluster(root: str, sections=None, **kw) -> ProcCluster:
    """Two nodes of three disks, three processes each (set in the config, not left to the
    machine's core count); one gateway worker, so the node processes are what is tested."""
    c = ProcCluster(root, nodes=2, disks_per_node=3, workers=1, sections=sections, **kw)
    with open(c.config) as f:
        text = f.read()
    with open(c.config, "w") as f:
        f.write(re.sub(r'(id = "n\d+"\n)', rf"\1processes = {PROCESSES}\n", text))
    return c.start()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = _cluster(str(tmp_path_factory.mktemp("node-processes")), sections=QUIET)
    yield c
    c.close()


def _node_children(c: ProcCluster, node: str) -> list[int]:
    return process_tree(c.procs[node].pid)[1:]


def _signed_get(c: ProcCluster, node: str, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    """One node API GET on a new connection (any of the node's processes may take it)."""
    headers = headers or auth.sign(CLUSTER_SECRET, "GET", path, node)
    req = urllib.request.Request(f"http://127.0.0.1:{c.node_ports[node]}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), headers


def test_each_node_runs_its_processes_and_owns_each_disk_once(cluster):
    for node in cluster.node_ids:
        assert len(_node_children(cluster, node)) == PROCESSES, f"{node}: {_node_children(cluster, node)}"
    log = cluster.log("n1")
    for disk in ("n1d1", "n1d2", "n1d3"):
        assert len(re.findall(rf"process \d serving disks \[[^]]*'{disk}'", log)) == 1, log[-2000:]


def test_objects_of_every_size_round_trip_through_any_process(cluster):
    s3 = cluster.client()
    s3.create_bucket(Bucket="sizes")
    sizes = [1, 4096, 100_000, 256 << 10, SEGMENT - 1, SEGMENT, 4 * SEGMENT + 12345]   # packs to EC files
    bodies = {f"s{n}-{size}": payload(size, f"node-processes-{n}-{size}") for n, size in enumerate(sizes)}
    for key, body in bodies.items():
        cluster.client().put_object(Bucket="sizes", Key=key, Body=body)   # each on a connection of its own
    for _ in range(3):
        for key, body in bodies.items():
            got = cluster.client().get_object(Bucket="sizes", Key=key)["Body"].read()
            assert got == body, f"{key}: {len(got)} bytes read back differ from the {len(body)} written"
    big = f"s6-{4 * SEGMENT + 12345}"
    part = s3.get_object(Bucket="sizes", Key=big, Range=f"bytes={SEGMENT - 5}-{3 * SEGMENT + 2}")["Body"].read()
    assert part == bodies[big][SEGMENT - 5:3 * SEGMENT + 3]
    s3.delete_object(Bucket="sizes", Key="s1-4096")
    with pytest.raises(Exception, match="NoSuchKey"):
        s3.get_object(Bucket="sizes", Key="s1-4096")


def test_concurrent_writers_of_small_and_large_objects(cluster):
    cluster.client().create_bucket(Bucket="together")
    bodies = {f"w{n}": payload(3000 if n % 3 == 0 else 200_000 if n % 3 == 1 else 2 * SEGMENT + n,
                               f"together-{n}") for n in range(24)}

    def put(item):
        key, body = item
        cluster.client().put_object(Bucket="together", Key=key, Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, bodies.items()))

    def get(key):
        return cluster.client().get_object(Bucket="together", Key=key)["Body"].read()

    with ThreadPoolExecutor(8) as pool:
        for key, got in zip(bodies, pool.map(get, bodies)):
            assert got == bodies[key], key


def test_a_replayed_node_request_is_refused_by_every_process(cluster):
    status, body, headers = _signed_get(cluster, "n1", "/v1/health")
    assert status == 200 and len(json.loads(body)["disks"]) == 3
    for attempt in range(4 * PROCESSES):       # new connections: each may reach another process
        status, body, _ = _signed_get(cluster, "n1", "/v1/health", headers)
        assert status == 403 and b"nonce already used" in body, (attempt, status, body)


def test_health_and_metrics_cover_every_disk_whichever_process_answers(cluster):
    for _ in range(2 * PROCESSES):
        status, body, _ = _signed_get(cluster, "n2", "/v1/health")
        assert status == 200
        assert sorted(d["disk"] for d in json.loads(body)["disks"]) == ["n2d1", "n2d2", "n2d3"]
        with urllib.request.urlopen(f"http://127.0.0.1:{cluster.node_ports['n2']}/metrics", timeout=10) as r:
            text = r.read().decode()
        assert sorted(re.findall(r'^pocket_node_disk_free_bytes\{disk="(\w+)"\}', text, re.M)) == \
            ["n2d1", "n2d2", "n2d3"]
        assert len(re.findall(r"^# TYPE pocket_node_pack_files ", text, re.M)) == 1


def _owner_of(c: ProcCluster, node: str, disk: str) -> int:
    """The process of `node` that holds `disk`'s lock file open."""
    lock = os.path.realpath(os.path.join(c.disk_paths[disk], LOCK_FILE))
    for pid in _node_children(c, node):
        fds = f"/proc/{pid}/fd"
        if any(os.path.realpath(os.path.join(fds, fd)) == lock for fd in os.listdir(fds)):
            return pid
    raise AssertionError(f"no process of {node} holds {lock}")


def _disks_down(c: ProcCluster) -> list[str]:
    try:
        with urllib.request.urlopen(c.endpoint + "/_pocket/ready", timeout=10) as r:
            return json.loads(r.read())["disks_down"]
    except urllib.error.HTTPError as e:     # 503: not ready, the same answer
        return json.loads(e.read())["disks_down"]


def test_a_stuck_process_leaves_only_its_own_disks_down(cluster):
    """A process that stops answering (SIGSTOP stands for a hung disk or a stuck loop) is
    left out of its siblings' health answers before the gateway's heartbeat gives up on
    the node: its disk goes down, the node's other disks stay up and keep taking writes."""
    pid = _owner_of(cluster, "n2", "n2d2")
    def alone_down_throughout() -> bool:
        """n2d2 alone down at every look for longer than node_timeout (3 s): several
        heartbeats. (A keep-alive connection the stuck process had accepted holds one
        heartbeat until node_timeout and then is dropped, so another disk may blink down
        once early on; a node that waited on its stuck sibling had all three down for good.)"""
        for _ in range(9):
            if _disks_down(cluster) != ["n2d2"]:
                return False
            time.sleep(0.5)
        return True
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for("n2d2 alone down, and the node's other disks up, for 4 s running", alone_down_throughout,
                 timeout=90)
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for("n2d2 back up", lambda: _disks_down(cluster) == [], timeout=30)


def test_requests_are_counted_once_whichever_process_takes_them(cluster):
    """Nobody else asks n1 for a scrubber's state (the cluster runs no scrub collection):
    each ask is counted once in n1's /metrics, by the process it reached, not again by the
    owner it was passed to."""
    for _ in range(9):
        assert _signed_get(cluster, "n1", "/v1/n1d2/scrub")[0] == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.node_ports['n1']}/metrics", timeout=10) as r:
        text = r.read().decode()
    counted = re.search(r'^pocket_node_requests_total\{method="GET",route="/v1/\{disk\}/scrub",status="200"\} (\S+)',
                        text, re.M)
    assert counted and float(counted.group(1)) == 9.0, text[-3000:]


def test_one_shot_commands_beside_the_node_see_its_disks_owned(tmp_path):
    """`pocket scrub` and `repair` attach to the disks (each process holds its disks' lock
    throughout) and rebuild a lost fragment file through the node, byte for byte. On a
    cluster of its own: the shared one may hold fragments other tests' writes left for
    repair under load (CI saw four), and this counts exactly what it removed."""
    cluster = _cluster(str(tmp_path / "cluster"), sections=QUIET)
    try:
        _scrub_and_repair_one(cluster, tmp_path)
    finally:
        cluster.close()


def _scrub_and_repair_one(cluster, tmp_path) -> None:
    s3 = cluster.client()
    s3.create_bucket(Bucket="beside")
    bodies = {f"b{n}": payload(50_000 if n % 2 else 3 * SEGMENT + n, f"beside-{n}") for n in range(4)}
    for key, body in bodies.items():
        s3.put_object(Bucket="beside", Key=key, Body=body)
    _whole_again(cluster)
    victim = next(ref for ref in archives_of(cluster, "beside", "b2") if "#" not in ref)
    keep = tmp_path / "keep"
    shutil.copyfile(victim, keep)
    os.unlink(victim)
    _, scrub = pocket(cluster, "scrub", "--json", ok=(1,))
    assert [r["archive"] for r in scrub["missing"]] == [os.path.basename(victim)] and scrub["corrupt"] == []
    _, fixed = pocket(cluster, "repair", "--json")
    assert fixed["fragments"] == 1
    with open(victim, "rb") as a, open(keep, "rb") as b:
        assert a.read() == b.read()
    for path in cluster.disk_paths.values():
        with pytest.raises(DiskInUse):
            os.close(own(path, os.path.basename(path)))
    for key, body in bodies.items():
        assert cluster.client().get_object(Bucket="beside", Key=key)["Body"].read() == body


def _whole_again(cluster) -> None:
    """Start from a whole cluster: a PUT may be acknowledged with a fragment left for repair
    (a disk marked down or too slow under load: CI saw this on a 2-core box running four
    test files at once), and the gateway says so in its log. Every fragment the scrub finds
    missing must be one of those (one whose write finished after the gateway gave up on it
    is not missing), and once repaired, a second scrub finds none."""
    log = cluster.log("gateway")
    left = {(key, int(i)) for key, listed in re.findall(
        r"stored beside/(\S+) on \d+ of \d+ disks; the missing fragments \[([\d, ]+)\]", log)
        for i in listed.split(",")}
    _, scrub = pocket(cluster, "scrub", "--json", ok=(0, 1))
    found = {(row["key"], row["index"]) for row in scrub["missing"]}
    assert found <= left and scrub["corrupt"] == [], (
        f"scrub found {sorted(found)} missing (and {scrub['corrupt']} corrupt); the gateway left "
        f"{sorted(left)} for repair; its warnings:\n" + "\n".join(
            line for line in log.splitlines() if "WARNING" in line or "ERROR" in line)[-4000:])
    if found:
        pocket(cluster, "repair", "--json")
        _, scrub = pocket(cluster, "scrub", "--json")
        assert scrub["missing"] == scrub["corrupt"] == [], scrub


def test_a_node_process_killed_under_load_loses_nothing_acknowledged(tmp_path):
    c = _cluster(str(tmp_path / "cluster"), sections=QUIET)
    try:
        c.client().create_bucket(Bucket="load")
        with Writers(c, "load", (1_300_000, 3000), "node-load") as w:
            wait_for("some writes acknowledged", lambda: len(w.acked) >= 20, timeout=120)
            before = set(_node_children(c, "n1"))
            victim = sorted(before)[1]
            os.kill(victim, signal.SIGKILL)
            acked_at_kill = len(w.acked)
            wait_for("the killed process replaced",
                     lambda: len(set(_node_children(c, "n1")) - before) == 1
                     and victim not in _node_children(c, "n1"), timeout=60)
            wait_for("writes acknowledged after the kill", lambda: len(w.acked) >= acked_at_kill + 20, timeout=120)
        log = c.log("n1")
        assert "was killed by SIGKILL" in log and "starting it again" in log
        for key, body in w.acked.items():
            assert c.client().get_object(Bucket="load", Key=key)["Body"].read() == body, key
    finally:
        c.close()


def test_sigterm_lets_an_upload_through_the_node_finish(tmp_path):
    """SIGTERM reaches every process; each stops taking connections but finishes what it
    was writing (a large PUT streams one archive per disk for its whole length), then the
    node exits 0. Half the disks are that node's, so the PUT succeeds only if it drained.
    The upload is held half way until the node is signalled: a PUT left to run raced the
    signal, and on a quiet box finished first."""
    # over the node link (storage.same_host off): a gateway beside its nodes otherwise
    # writes a large archive into the node's folder itself, and the node has nothing to drain
    c = _cluster(str(tmp_path / "cluster"), sections=QUIET, storage={"same_host": False})
    try:
        c.client().create_bucket(Bucket="drain")
        body = payload(48 * SEGMENT + 777, "drained-upload")
        children = _node_children(c, "n2")
        tmp = [os.path.join(c.disk_paths[d], "tmp") for d in ("n2d1", "n2d2", "n2d3")]
        signed = sign("PUT", f"{c.endpoint}/drain/big", {"Content-Length": str(len(body))})
        head = "".join(f"{k}: {v}\r\n" for k, v in signed.headers.items() if k.lower() != "host")
        half = len(body) // 2
        with socket.create_connection(("127.0.0.1", c.port), timeout=60) as upload:
            upload.sendall(f"PUT /drain/big HTTP/1.1\r\nHost: 127.0.0.1:{c.port}\r\n{head}\r\n".encode()
                           + body[:half])
            wait_for("the upload writing on n2", lambda: all(os.listdir(t) for t in tmp), timeout=60, every=0.01)
            c.procs["n2"].send_signal(signal.SIGTERM)
            wait_for("every process of n2 closing its port", lambda: c.log("n2").count("listener closed") >= PROCESSES,
                     timeout=30)
            upload.sendall(body[half:])
            answer = read_answer(upload, timeout=60)
        assert answer.status == 200, answer
        assert c.procs["n2"].wait(30) == 0, c.log("n2")[-2000:]
        assert c.log("n2").count("shutdown complete") == 2 * PROCESSES    # each: its port, then its siblings'
        assert not [p for p in children if os.path.exists(f"/proc/{p}")]
        c.start_node("n2")
        assert c.client().get_object(Bucket="drain", Key="big")["Body"].read() == body
    finally:
        c.close()
