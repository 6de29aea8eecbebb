"""Power loss, not just a killed process: every node of a cluster loses power under load
(SIGKILL, then each disk rewritten to what its node had fsync'd: power_cut.py), and
every PUT that was acknowledged must still read back byte-exact, with at least its write
quorum of fragments on the disks (k+1 = 5 of ec:4+2, 2 of replica:3), none corrupt.

A store that acknowledged before fsync, renamed before the data was synced, or created
a folder and never synced its parent loses files here that a SIGKILL alone would keep."""
from __future__ import annotations

import os
import queue
import random
import signal
import threading
from collections import Counter

from . import power_cut
from .conftest import payload
from .crash_checks import SMALL_SEGMENTS, seed
from .harness import QUIET, ProcCluster, pocket, wait_for, wait_http

SIZES = [1000, 20_000, 50_000, 150_000, 400_000, 1_200_000]


def test_power_loss_of_every_node_keeps_every_acknowledged_object(tmp_path):
    rng = random.Random(seed())
    c = ProcCluster(str(tmp_path / "cluster"), storage=SMALL_SEGMENTS,
                    sections=QUIET)
    journals = {node: os.path.join(c.root, f"{node}.syncs") for node in c.node_ids}
    for node in c.node_ids:
        c.env[node] = power_cut.env(journals[node])
    try:
        c.start()
        durable = {disk: power_cut.snapshot(path, journals[disk[:-2]]) for disk, path in c.disk_paths.items()}
        s3 = c.client()
        s3.create_bucket(Bucket="power")
        todo: queue.Queue = queue.Queue()
        for i in range(400):
            todo.put((f"o{i:03d}", rng.choice(SIZES)))
        acked: dict[str, bytes] = {}
        crashed: list[BaseException] = []
        lock = threading.Lock()
        power = threading.Event()

        def work() -> None:
            client = c.client(retries=1)
            try:
                while not power.is_set():
                    try:
                        key, size = todo.get_nowait()
                    except queue.Empty:
                        return
                    data = payload(size)
                    try:
                        client.put_object(Bucket="power", Key=key, Body=data)
                    except Exception:    # not acknowledged: no promise
                        continue
                    with lock:
                        acked[key] = data
            except BaseException as e:
                crashed.append(e)
                raise

        threads = [threading.Thread(target=work, daemon=True) for _ in range(6)]
        for t in threads:
            t.start()
        wait_for("40 acknowledged PUTs", lambda: len(acked) >= 40, timeout=120)
        for node in c.node_ids:             # the power goes, PUTs still in flight
            c.signal(node, signal.SIGKILL)
        power.set()
        for t in threads:
            t.join(120)
            assert not t.is_alive(), "a client thread hung"
        assert not crashed, crashed
        with lock:
            acked = dict(acked)
        dropped = {disk: power_cut.cut_power(path, journals[disk[:-2]], durable[disk])
                   for disk, path in c.disk_paths.items()}
        print(f"{len(acked)} PUTs acknowledged; dropped at power loss: {dropped}")

        for node in c.node_ids:
            c.start_node(node)
        wait_http(c.endpoint + "/_pocket/ready")
        s3 = c.client()
        for key, data in acked.items():
            assert s3.get_object(Bucket="power", Key=key)["Body"].read() == data, key
        _, report = pocket(c, "scrub", "--orphan-grace", "0", "--json", ok=(0, 1))
        assert report["corrupt"] == [], report["corrupt"][:3]
        lost = Counter(row["key"] for row in report["missing"] if row["key"] in acked)
        assert all(n <= 1 for n in lost.values()), f"acknowledged objects below their write quorum: {lost}"
    finally:
        c.close()
