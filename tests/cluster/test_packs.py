"""Probe tests for pack files: small objects written under load by real node processes."""
import os
import signal
import threading
import time

from storage.node import packformat

from .harness import wait_http


def test_acknowledged_small_puts_survive_killing_every_node(fresh_cluster):
    """Nodes die mid-load with group commits in flight; every PUT that got a 200 is there
    after they restart, and the disks carry on taking writes."""
    c = fresh_cluster
    c.client().create_bucket(Bucket="packs")
    acked: dict[str, bytes] = {}
    stop = threading.Event()

    def writer(w: int) -> None:
        client = c.client(retries=1)
        i = 0
        while not stop.is_set():
            key, body = f"w{w}/k{i}", os.urandom(100 + (i * 379) % 20_000)
            i += 1
            try:
                client.put_object(Bucket="packs", Key=key, Body=body)
            except Exception:
                continue
            acked[key] = body

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    for node in c.node_ids:
        c.signal(node, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(60)
    assert len(acked) >= 150
    packed = sum(len(packformat.live_archives(os.path.join(p, "packs"))) for p in c.disk_paths.values())
    assert packed >= 3 * 150, "small objects should be in pack files"

    for node in c.node_ids:
        c.start_node(node)
    wait_http(c.endpoint + "/_pocket/ready")
    s3 = c.client()
    for key, body in acked.items():
        assert s3.get_object(Bucket="packs", Key=key)["Body"].read() == body, key
    s3.put_object(Bucket="packs", Key="after", Body=b"still writable")
    assert s3.get_object(Bucket="packs", Key="after")["Body"].read() == b"still writable"
