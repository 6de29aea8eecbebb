"""Node loss under load: hundreds of PUTs and GETs from many threads while m = 2 node
processes of an ec:4+2 cluster are SIGKILLed, one restarted as it was and the other on
a wiped, re-initialised disk (a replacement drive with the same id).

Only PUTs that returned 200 count as acknowledged; every one of them must read back
byte-exact afterwards, and scrub + repair must restore full redundancy: no missing
fragment, exactly the archives every object needs, and exact reads with two OTHER
nodes stopped (so the wiped disk really holds its share again).
"""
from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import threading
import time

import pytest

from .crash_checks import SMALL_SEGMENTS, seed, wait_repaired, whole_again
from .harness import ProcCluster, pocket
from .workload import GONE, etag_of, read_state

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)

SIZES = [1024] * 60 + [20_000] * 50 + [150_000] * 40 + [400_000] * 40 + [1_500_000] * 10 + [3_000_000] * 3


def test_m_nodes_killed_under_load_lose_no_acknowledged_object(tmp_path):
    rng = random.Random(seed())
    c = ProcCluster(str(tmp_path / "cluster"), storage=SMALL_SEGMENTS,
                    sections={"scrub": {"enabled": False}, "repair": {"interval": 0.5}}).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="load")
        todo: queue.Queue = queue.Queue()
        for i, size in enumerate(rng.sample(SIZES, len(SIZES))):
            todo.put((f"obj{i:04d}", size))
        acked: dict[str, tuple[bytes, str]] = {}
        tried: dict[str, bytes] = {}
        bad_reads: list[str] = []
        crashed: list[BaseException] = []   # a worker's exception fails the test, not just a warning
        lock = threading.Lock()

        def work(seed: int) -> None:
            try:
                load(seed)
            except BaseException as e:
                with lock:
                    crashed.append(e)
                raise

        def load(seed: int) -> None:
            r, client = random.Random(seed), c.client(retries=1)
            while True:
                try:
                    key, size = todo.get_nowait()
                except queue.Empty:
                    return
                data = os.urandom(size)
                with lock:
                    tried[key] = data
                try:
                    etag = client.put_object(Bucket="load", Key=key, Body=data)["ETag"]
                except Exception:   # not acknowledged: whole or absent afterwards
                    etag = None
                if etag is not None:
                    with lock:
                        acked[key] = (data, etag)
                    if etag != etag_of(data):
                        bad_reads.append(f"{key}: PUT answered ETag {etag}")
                with lock:
                    sample = r.sample(sorted(acked), min(2, len(acked)))
                for other in sample:
                    got, tag = read_state(client, "load", other)
                    if (got, tag) != acked[other]:
                        with lock:
                            bad_reads.append(f"{other}: read {len(got)} bytes, ETag {tag}")

        threads = [threading.Thread(target=work, args=(rng.random(),), daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        first, second = rng.sample(c.node_ids, 2)
        time.sleep(rng.uniform(0.5, 1.5))
        c.signal(first, signal.SIGKILL)
        time.sleep(rng.uniform(1.0, 2.0))
        c.signal(second, signal.SIGKILL)            # m nodes down: reads decode, EC writes refuse
        time.sleep(rng.uniform(1.0, 2.0))
        c.start_node(first)
        time.sleep(rng.uniform(0.5, 1.5))
        shutil.rmtree(c.disk_paths[f"{second}d1"])  # the replacement drive: empty, same id
        c.start_node(second)
        for t in threads:
            t.join(300)
            assert not t.is_alive(), "a client thread hung"
        print(f"{len(acked)} of {len(tried)} PUTs acknowledged; killed {first} and {second} (wiped)")
        assert not crashed, f"{len(crashed)} client threads died: {crashed[:3]!r}"
        assert not bad_reads, bad_reads[:5]
        assert len(acked) >= len(SIZES) // 2, "too few PUTs succeeded for the test to mean much"

        for key, data in tried.items():
            got, etag = read_state(s3, "load", key)
            if key in acked:
                assert (got, etag) == acked[key], f"acknowledged {key} reads back wrong"
            else:
                assert got is GONE or got == data, f"unacknowledged {key} is there but not whole"

        # Full redundancy again: the scrub finds what the wiped disk and the outage lost,
        # the gateway's repairer rebuilds it, a second scrub finds nothing.
        pocket(c, "scrub", "--orphan-grace", "0", "--json", ok=(0, 1))
        st = wait_repaired(c, timeout=120)
        assert st["repair_queue"] == 0, st["at_risk"]
        whole_again(c)
        for other in [n for n in c.node_ids if n not in (first, second)][:2]:
            c.stop(other)
        s3 = c.client()
        for key, (data, etag) in acked.items():
            assert read_state(s3, "load", key) == (data, etag), key
    finally:
        c.close()
