"""Probe tests: kill node processes and check that no acknowledged byte is lost.

The cluster is EC 4+2 over six node processes (one disk each): any two may die and
every object still reads back; a PUT needs k+1 = 5 disks, so one node down is fine
and two down refuses large objects cleanly.
"""
import os
import random
import signal
import time

import pytest
from botocore.exceptions import ClientError

from .conftest import payload

SEG = 1 << 20
SIZES = [0, 1, 5000, 200_000, SEG, 3 * SEG + 7]


def _fill(s3, bucket, n_each=1):
    objects = {}
    for size in SIZES:
        for i in range(n_each):
            key = f"obj-{size}-{i}"
            data = payload(size)
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            objects[key] = data
    return objects


def test_get_with_m_nodes_killed(fresh_cluster):
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="durable")
    objects = _fill(s3, "durable", n_each=2)
    for victim in random.sample(c.node_ids, 2):
        c.signal(victim, signal.SIGKILL)
    for key, data in objects.items():
        assert s3.get_object(Bucket="durable", Key=key)["Body"].read() == data, key
        if len(data) > 2000:
            r = s3.get_object(Bucket="durable", Key=key, Range="bytes=3-2000")
            assert r["Body"].read() == data[3:2001]


def test_get_with_corrupt_and_missing_fragments(fresh_cluster):
    """Bit rot in one data fragment plus a lost one: reads decode around both."""
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="rot")
    data = payload(4 * SEG + 99)
    s3.put_object(Bucket="rot", Key="victim", Body=data)
    archives = sorted(p for p in c.archive_files())
    by_index = {int(p.rsplit(".", 1)[1]): p for p in archives}
    assert sorted(by_index) == list(range(6))
    with open(by_index[0], "r+b") as f:  # flip a byte inside segment 2's payload
        f.seek(64 + 2 * (12 + SEG // 4) + 12 + 1000)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x40]))
    os.unlink(by_index[1])
    assert s3.get_object(Bucket="rot", Key="victim")["Body"].read() == data
    metrics = c_metrics(c)
    assert "pocket_fragments_damaged_total 2.0" in metrics


def c_metrics(c) -> str:
    import urllib.request
    with urllib.request.urlopen(c.endpoint + "/_pocket/metrics") as r:
        return r.read().decode()


def test_put_with_m_minus_1_nodes_down_succeeds(fresh_cluster):
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="degraded")
    c.signal(c.node_ids[0], signal.SIGKILL)
    objects = _fill(s3, "degraded")
    c.start_node(c.node_ids[0])
    for key, data in objects.items():
        assert s3.get_object(Bucket="degraded", Key=key)["Body"].read() == data


def test_put_below_quorum_fails_cleanly(fresh_cluster):
    c = fresh_cluster
    s3 = c.client(retries=1)
    s3.create_bucket(Bucket="quorum")
    s3.put_object(Bucket="quorum", Key="before", Body=b"kept")
    before = c.archive_files()
    for victim in c.node_ids[:2]:
        c.signal(victim, signal.SIGKILL)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="quorum", Key="big", Body=payload(2 * SEG))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="quorum", Key="big")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="quorum")["Contents"]] == ["before"]
    deadline = time.time() + 10
    while time.time() < deadline and c.archive_files() != before:
        time.sleep(0.2)
    assert c.archive_files() == before, "a refused PUT left fragment archives behind"
    assert s3.get_object(Bucket="quorum", Key="before")["Body"].read() == b"kept"


def test_hung_node_does_not_hang_reads(fresh_cluster):
    """A node stopped with SIGSTOP (alive but silent) costs a timeout, not a hang."""
    c = fresh_cluster
    s3 = c.client(retries=1)
    s3.create_bucket(Bucket="hang")
    data = payload(2 * SEG)
    s3.put_object(Bucket="hang", Key="k", Body=data)
    c.signal(c.node_ids[0], signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert s3.get_object(Bucket="hang", Key="k")["Body"].read() == data
        assert time.monotonic() - started < 15
    finally:
        c.signal(c.node_ids[0], signal.SIGCONT)


def test_node_restart_during_load_keeps_every_acknowledged_object(fresh_cluster):
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="churn")
    acked = {}
    for i in range(30):
        if i == 10:
            c.signal(c.node_ids[2], signal.SIGKILL)
        if i == 20:
            c.start_node(c.node_ids[2])
        data = payload(random.choice([100, 70_000, SEG + 5]))
        try:
            s3.put_object(Bucket="churn", Key=f"k{i}", Body=data)
            acked[f"k{i}"] = data
        except ClientError:
            pass
    assert len(acked) >= 25
    for key, data in acked.items():
        assert s3.get_object(Bucket="churn", Key=key)["Body"].read() == data, key


def test_full_disks_refuse_new_objects_cleanly(fresh_cluster):
    """Disks below their free-space reserve take no new archives; with too few left a PUT
    gets 507 InsufficientStorage, nothing is stored, and what is stored still reads."""
    c = fresh_cluster
    s3 = c.client(retries=1)
    s3.create_bucket(Bucket="full")
    kept = payload(2 * SEG)
    s3.put_object(Bucket="full", Key="kept", Body=kept)
    before = c.archive_files()
    c.stop("gateway")
    # The disks "fill up" while the gateway is down: a reserve larger than any disk's free space.
    text = open(c.config).read().replace("[storage]\n", f"[storage]\nmin_free_bytes = {1 << 60}\n")
    with open(c.config, "w") as f:
        f.write(text)
    c.start_gateway()
    for size in (100, 2 * SEG):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="full", Key=f"new-{size}", Body=payload(size))
        assert e.value.response["Error"]["Code"] == "InsufficientStorage"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507
    assert c.archive_files() == before
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="full")["Contents"]] == ["kept"]
    assert s3.get_object(Bucket="full", Key="kept")["Body"].read() == kept


def test_node_slower_than_heartbeats_but_within_node_timeout_stays_up(tmp_path):
    """Under load a node may answer its heartbeat late. A stall shorter than node_timeout is
    slowness, not death: a write would wait that long for it, so the heartbeat must too.
    Given up after two heartbeat intervals, one slow node took two disks of the six-wide
    volume away, and every PUT until the next beat was 503 (quorum 5 of 6)."""
    from concurrent.futures import ThreadPoolExecutor

    from .harness import ProcCluster
    c = ProcCluster(str(tmp_path / "cluster"), nodes=3, disks_per_node=2,
                    gateway={"heartbeat": 0.5}, storage={"node_timeout": 3.0}).start()
    try:
        s3 = c.client(retries=1)
        s3.create_bucket(Bucket="sluggish")
        data = payload(SEG + 4321, "sluggish")
        stall = 2.2     # the simulated slowness: four heartbeat intervals, under node_timeout
        c.signal(c.node_ids[0], signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            with ThreadPoolExecutor(1) as pool:
                # once two heartbeat timeouts (2 x 2 x 0.5 s) have passed inside the stall
                while time.monotonic() - stopped < 1.6:
                    time.sleep(0.05)
                put = pool.submit(s3.put_object, Bucket="sluggish", Key="late", Body=data)
                while time.monotonic() - stopped < stall:
                    time.sleep(0.05)
                c.signal(c.node_ids[0], signal.SIGCONT)
                put.result(timeout=60)
        finally:
            c.signal(c.node_ids[0], signal.SIGCONT)
        assert s3.get_object(Bucket="sluggish", Key="late")["Body"].read() == data
        downs = [line for line in c.log("gateway").splitlines() if "marked down" in line]
        assert not downs, f"a node slow for {stall}s (node_timeout 3s) was marked down: {downs[:2]}"
    finally:
        c.close()
