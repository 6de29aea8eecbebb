"""Probe tests of scrubbing on the nodes: each node checks its own disks, the gateway only
collects what they found, so bit rot is found and queued without a single archive byte
crossing the network; `pocket repair --rate` then rebuilds at the rate asked for."""
import random
from collections import Counter
import re
import time
import urllib.request

from .archives import archive_parts, archive_span, flip_payload_byte, read_archive
from .disk_checks import load_objects
from .harness import ProcCluster, pocket

ARCHIVE_READS = re.compile(r'^pocket_node_requests_total\{method="GET",route="/v1/\{disk\}/archives/\{name\}"', re.M)


def metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def gauge(text: str, name: str, disk: str | None = None) -> float:
    label = f'{{disk="{disk}"}}' if disk else ""
    return float(re.search(rf"^{re.escape(name + label)} (\S+)$", text, re.M).group(1))


def test_nodes_find_rot_and_the_gateway_queues_it_without_reading_archives(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), sections={
        "scrub": {"rate": 0, "interval": 1.0, "start_delay": 0.5, "collect_interval": 1.0},
        "repair": {"enabled": False}})
    c.start()
    try:
        s3 = c.client()
        load_objects(s3, "self", 12)
        refs = sorted(c.archive_files())
        big = max(refs, key=lambda ref: archive_span(ref)[2])
        small = next(ref for ref in refs if "#" in ref and archive_parts(ref)[1].split(".")[0]
                     != archive_parts(big)[1].split(".")[0])
        originals = {ref: read_archive(ref) for ref in (big, small)}
        rng = random.Random(3)
        for ref in originals:
            flip_payload_byte(ref, rng)
        node_of = {f"{n}d1": n for n in c.node_ids}
        victims = Counter(archive_parts(ref)[0] for ref in originals)

        deadline = time.monotonic() + 60
        while gauge(metrics(c.endpoint + "/_pocket/metrics"), "pocket_repair_queue_length") < 2:
            assert time.monotonic() < deadline, "the gateway never queued the rot the nodes should find"
            time.sleep(0.5)
        for disk, node in node_of.items():
            # a disk's first pass may have run before the load (start_delay): wait for one with data
            while gauge(text := metrics(f"http://127.0.0.1:{c.node_ports[node]}/metrics"),
                        "pocket_node_scrub_bytes_checked_total", disk) == 0:
                assert time.monotonic() < deadline, f"{disk} never checked a byte"
                time.sleep(0.5)
            assert not ARCHIVE_READS.search(text), f"someone read archive bytes from {node}"
            assert gauge(text, "pocket_node_scrub_corrupt_archives", disk) == victims[disk]
            assert gauge(text, "pocket_node_scrub_last_full_pass_timestamp_seconds", disk) > 0
            assert gauge(text, "pocket_node_scrub_bytes_checked_total", disk) > 0

        rate = 200_000
        _, fixed = pocket(c, "repair", "--json", "--rate", str(rate))
        assert fixed["fragments"] == 2 and fixed["remaining"] == 0
        assert fixed["seconds"] >= fixed["bytes_written"] * 0.95 / rate
        for ref, original in originals.items():
            assert read_archive(ref) == original
    finally:
        c.close()
