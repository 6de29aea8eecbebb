"""A gateway of several worker processes (storage/workers.py) is one gateway to its users.

Requests land on whichever worker accepts the connection, so these tests open a new
connection per request and check what a user would: every worker serves, bytes read
back are the bytes written whichever workers wrote and read them, a conditional PUT
racing through different workers has one winner, a worker killed under load loses
nothing acknowledged and is replaced, and the once-per-cluster daemons run once.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from .conftest import payload
from .harness import ProcCluster, pocket, process_tree, wait_for, wait_http
from .writers import Writers

SEGMENT = 1 << 20   # the default segment size: bodies below, at and across it


def _health(c: ProcCluster) -> dict:
    """/_pocket/health over a new connection (so the kernel may hand it to any worker)."""
    with urllib.request.urlopen(c.endpoint + "/_pocket/health", timeout=10) as r:
        return json.loads(r.read())


def _workers_answering(c: ProcCluster, want: int) -> set[int]:
    """Pids of the workers seen answering, once `want` different ones have."""
    seen: set[int] = set()

    def enough():
        seen.add(_health(c)["pid"])
        return len(seen) >= want
    wait_for(f"{want} different workers to answer", enough, timeout=60, every=0.02)
    return seen


@pytest.fixture(scope="module", params=["nodes", "embedded"])
def workers_cluster(request, tmp_path_factory):
    """Two workers over node processes, and over in-process disks (owned by one process)."""
    embedded = request.param == "embedded"
    c = ProcCluster(str(tmp_path_factory.mktemp(f"workers-{request.param}")), nodes=6, embedded=embedded,
                    workers=2).start()
    yield c
    c.close()


def test_every_worker_serves_and_reads_what_the_others_wrote(workers_cluster):
    c = workers_cluster
    assert len(_workers_answering(c, 2)) == 2
    s3 = c.client()
    s3.create_bucket(Bucket="spread")
    sizes = [1, 4096, 100_000, 256 << 10, SEGMENT - 1, SEGMENT, 4 * SEGMENT + 12345]   # packs to EC archives
    bodies = {f"k{n}-{size}": payload(size, f"spread-{n}-{size}") for n, size in enumerate(sizes)}

    def put(item):
        key, body = item
        c.client().put_object(Bucket="spread", Key=key, Body=body)   # a client (connection) of its own

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, bodies.items()))
    for _ in range(3):     # each read on a new connection: several workers read every object
        for key, body in bodies.items():
            got = c.client().get_object(Bucket="spread", Key=key)["Body"].read()
            assert got == body, f"{key}: {len(got)} bytes read back differ from the {len(body)} written"
    big = bodies[f"k6-{4 * SEGMENT + 12345}"]
    part = c.client().get_object(Bucket="spread", Key=f"k6-{4 * SEGMENT + 12345}",
                                 Range=f"bytes={SEGMENT - 7}-{3 * SEGMENT + 9}")["Body"].read()
    assert part == big[SEGMENT - 7:3 * SEGMENT + 10]


def test_conditional_puts_racing_through_workers_have_one_winner(workers_cluster):
    c = workers_cluster
    c.client().create_bucket(Bucket="race")
    for round_ in range(5):
        key = f"once-{round_}"
        bodies = [payload(50_000, f"race-{round_}-{i}") for i in range(12)]
        start = threading.Barrier(len(bodies))

        def put(body):
            s3 = c.client(retries=1)
            start.wait()
            try:
                s3.put_object(Bucket="race", Key=key, Body=body, IfNoneMatch="*")
                return 200, body
            except ClientError as e:
                return e.response["ResponseMetadata"]["HTTPStatusCode"], body

        with ThreadPoolExecutor(len(bodies)) as pool:
            results = list(pool.map(put, bodies))
        winners = [body for status, body in results if status == 200]
        assert len(winners) == 1, f"round {round_}: {len(winners)} conditional PUTs succeeded"
        assert {status for status, _ in results} <= {200, 409, 412}, results
        assert c.client().get_object(Bucket="race", Key=key)["Body"].read() == winners[0]


def test_daemons_run_once_across_workers(workers_cluster):
    """Each lease is held by exactly one worker, named by its worker number."""
    c = workers_cluster
    def status():
        report = pocket(c, "status", "--json")[1]
        return report if {"repair", "scrub", "failures"} <= set(report["leases"]) else None
    report = wait_for("every lease taken", status)
    held = report["leases"]
    prefix = f"/127.0.0.1:{c.port}#"
    for name, lease in held.items():
        assert prefix in lease["holder"], f"lease {name} is held by {lease['holder']}, not one worker"
        assert lease["holder"].rsplit("#", 1)[1] in {"0", "1"}
    assert report["gateway"]["running"]


def test_a_worker_killed_under_load_loses_nothing_acknowledged(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6, embedded=True, workers=2).start()
    try:
        c.client().create_bucket(Bucket="load")
        with Writers(c, "load", (300_000, 3000), "load") as w:
            wait_for("some writes acknowledged", lambda: len(w.acked) >= 20, timeout=120)
            before = set(c.gateway_workers())
            victim = _health(c)["pid"]
            os.kill(victim, signal.SIGKILL)
            acked_at_kill = len(w.acked)
            wait_for("the killed worker replaced",
                     lambda: len(set(c.gateway_workers()) - before) == 1 and victim not in c.gateway_workers(),
                     timeout=60)
            wait_for("writes acknowledged after the kill", lambda: len(w.acked) >= acked_at_kill + 20, timeout=120)
        assert len(_workers_answering(c, 2)) == 2
        assert "was killed by SIGKILL" in c.log("gateway") and "starting it again" in c.log("gateway")
        for key, body in w.acked.items():
            assert c.client().get_object(Bucket="load", Key=key)["Body"].read() == body, key
    finally:
        c.close()


def test_a_reload_while_workers_start_keeps_the_gateway_up(tmp_path):
    """logrotate or a certificate renewal may send SIGHUP at any moment, also while the
    workers are still starting: a worker that died of it before serving stopped the whole
    gateway. SIGHUPs hammered at the gateway and every process under it from the first
    instant until well after it is ready must leave it serving."""
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6, embedded=True, workers=2)
    stop = threading.Event()
    hit: set[int] = set()

    def hammer(master: int) -> None:
        while not stop.is_set():
            for pid in process_tree(master):
                try:
                    os.kill(pid, signal.SIGHUP)
                    hit.add(pid)
                except ProcessLookupError:
                    pass
            stop.wait(0.005)
    try:
        c.start_gateway(ready=False)   # hammered while it starts
        master = c.procs["gateway"]
        t = threading.Thread(target=hammer, args=(master.pid,), daemon=True)
        t.start()
        wait_http(c.endpoint + "/_pocket/ready", timeout=60)
        wait_for("the workers and the disk owner to have been signalled", lambda: len(hit) >= 4, timeout=30)
        stop.set()
        t.join()
        assert master.poll() is None, f"the gateway exited on a SIGHUP:\n{c.log('gateway')[-2000:]}"
        body = payload(300_000, "reload-at-start")
        s3 = c.client()
        s3.create_bucket(Bucket="reloaded")
        s3.put_object(Bucket="reloaded", Key="k", Body=body)
        assert s3.get_object(Bucket="reloaded", Key="k")["Body"].read() == body
        assert master.poll() is None
    finally:
        stop.set()
        c.close()


def test_a_killed_gateways_run_folder_is_removed_at_the_next_start(tmp_path):
    """The workers' shared counters live in a folder under the temp dir that the master
    removes when it exits; one SIGKILLed (an OOM kill) cannot, and such folders piled up.
    The next start removes every one whose processes are all gone, never a live one's."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6, embedded=True, workers=2)
    c.env_all["TMPDIR"] = str(tmp)
    try:
        c.start()
        first = sorted(p.name for p in tmp.glob("pocket-metrics-*"))
        assert len(first) == 1, first
        c.signal("gateway", signal.SIGKILL)     # waits for the workers to follow it
        assert sorted(p.name for p in tmp.glob("pocket-metrics-*")) == first    # left behind
        c.start_gateway()
        second = sorted(p.name for p in tmp.glob("pocket-metrics-*"))
        assert len(second) == 1 and second != first, (first, second)
        body = payload(300_000, "after-the-kill")
        s3 = c.client()
        s3.create_bucket(Bucket="counted")
        s3.put_object(Bucket="counted", Key="k", Body=body)
        assert s3.get_object(Bucket="counted", Key="k")["Body"].read() == body
    finally:
        c.close()
    assert not list(tmp.glob("pocket-metrics-*")), "a gateway stopped normally left its run folder"
