"""A wiped disk rebuilt by `pocket repair` beside running nodes whose folders are on this
host: archive files are read from the folders (OwnedDisk), small archives and stats asked
of the nodes in fetches (node/fetch.py), rebuilt archives that get files of their own
written into the lost disk's folder, small ones through its node (into its packs). Byte
for byte, around a corrupt source fragment, with the rebuilt disk's node killed in the
middle, and for many small objects sent to it in few batches.
"""
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from .archives import archive_parts, flip_payload_byte, on_disks, read_archive
from .conftest import payload
from .crash_checks import whole_again
from .disk_checks import check_all
from .harness import REPO, pocket

SIZES = [1, 3_000, 40_000, 150_000, 300_000, 1_100_000, 2_600_000]


def _load(s3, bucket: str, count: int) -> dict[str, bytes]:
    s3.create_bucket(Bucket=bucket)
    objects = {f"k{i:03d}": payload(SIZES[i % len(SIZES)] + 7 * i) for i in range(count)}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return objects


def _wipe(c, node: str) -> dict[str, bytes]:
    """Kill `node`, empty its disk, start it again as a replacement; the archives it held."""
    held = {archive_parts(ref)[1]: read_archive(ref) for ref in on_disks({f"{node}d1": c.disk_paths[f"{node}d1"]})}
    c.stop(node)
    shutil.rmtree(c.disk_paths[f"{node}d1"])
    c.start_node(node)
    return held


def _served(c, node: str, method: str, route: str) -> float:
    """Requests of a route a node answered (its own /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{c.node_ports[node]}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(v) for v in re.findall(rf'^pocket_node_requests_total\{{method="{method}",route="{re.escape(route)}"[^}}]*\}} (\S+)$',
                                            text, re.M))


def _rebuilt(c, node: str) -> dict[str, bytes]:
    return {archive_parts(ref)[1]: read_archive(ref) for ref in on_disks({f"{node}d1": c.disk_paths[f"{node}d1"]})}


def test_wiped_disk_is_rebuilt_byte_for_byte_from_local_files_around_corrupt_sources(quiet_cluster):
    c = quiet_cluster
    s3 = c.client()
    objects = _load(s3, "lost", 28)
    victim, rng = "n1", random.Random(14)
    lost_versions = {archive_parts(ref)[1].partition(".")[0]
                     for ref in on_disks({f"{victim}d1": c.disk_paths[f"{victim}d1"]})}
    sources = sorted(ref for ref in on_disks(c.disk_paths) if archive_parts(ref)[0] != f"{victim}d1"
                     and archive_parts(ref)[1].partition(".")[0] in lost_versions)
    rotted = [rng.choice([r for r in sources if "#" not in r]), rng.choice([r for r in sources if "#" in r])]
    for ref in rotted:
        flip_payload_byte(ref, rng)
    held = _wipe(c, victim)
    assert len(held) >= 10

    code, report = pocket(c, "scrub", "--json", ok=(1,))
    assert {r["archive"] for r in report["missing"]} == set(held)
    ranged = {n: _served(c, n, "GET", "/v1/{disk}/archives/{name}") for n in c.node_ids}
    fetches = sum(_served(c, n, "PUT", "/v1/{disk}/fetch") for n in c.node_ids)
    streamed = _served(c, victim, "PUT", "/v1/{disk}/archives/{name}")
    _, fixed = pocket(c, "repair", "--json", ok=(0, 1))   # 1: a rotted source met on the way is queued anew
    assert fixed["failed"] == [] and fixed["fragments"] >= len(held)
    assert _rebuilt(c, victim) == held, "every lost archive back, byte for byte, none from a rotted source"
    files = [ref for ref in on_disks({f"{victim}d1": c.disk_paths[f"{victim}d1"]}) if "#" not in ref]
    assert len(files) >= 4, "the load has archives too large for a pack"
    assert _served(c, victim, "PUT", "/v1/{disk}/archives/{name}") == streamed, \
        "archive files of a disk on this host are written into its folder, not streamed to its node"
    assert {n: _served(c, n, "GET", "/v1/{disk}/archives/{name}") for n in c.node_ids} == ranged, \
        "archive files on this host are read from their folders, not asked of their nodes"
    # each lost archive took a stat and at least one read: together, in fewer requests
    assert sum(_served(c, n, "PUT", "/v1/{disk}/fetch") for n in c.node_ids) - fetches < len(held)

    pocket(c, "scrub", "--json", ok=(0, 1))
    pocket(c, "repair", "--json")
    whole_again(c)                       # the rotted sources rewritten too
    check_all(s3, "lost", objects)


def test_rebuilt_disks_node_killed_mid_repair_loses_nothing(quiet_cluster):
    """The node taking the rebuilt archives dies while batches of them are on the way:
    what it had not fsync'd stays queued, a second repair finishes, nothing else moves."""
    c = quiet_cluster
    s3 = c.client()
    objects = _load(s3, "midway", 35)
    victim = "n2"
    held = _wipe(c, victim)
    pocket(c, "scrub", "--json", ok=(1,))
    proc = subprocess.Popen([sys.executable, "-m", "cli", "repair", "--rate", "3000000", "--config", c.config],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)   # a few seconds
    deadline = time.monotonic() + 60
    while not 0 < len(on_disks({f"{victim}d1": c.disk_paths[f"{victim}d1"]})) < len(held):   # mid-repair
        assert proc.poll() is None, "the repair ended before the node could be killed in its middle"
        assert time.monotonic() < deadline, "the repair wrote nothing to the wiped disk in a minute"
        time.sleep(0.05)
    c.signal(victim, signal.SIGKILL)
    c.procs.pop(victim)
    assert proc.wait(60) == 1, "the node died while the repair was writing to it"
    c.start_node(victim)
    for _ in range(3):
        _, fixed = pocket(c, "repair", "--json", ok=(0, 1))
        if fixed["remaining"] == 0:
            break
    assert fixed["remaining"] == 0 and fixed["failed"] == []
    assert _rebuilt(c, victim) == held
    whole_again(c)
    check_all(s3, "midway", objects)


def test_many_small_objects_on_a_wiped_disk_come_back_in_few_batches(quiet_cluster):
    """160 small objects (replicated and small 4+2 sets, packed) and a wiped disk: every
    archive it held comes back byte for byte, every object reads back whole, and the
    rebuilt archives reach its node in batches of many (`pocket repair` sends up to
    batch.BULK_BATCH_BYTES a request, where a gateway sends a quarter of that)."""
    c = quiet_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="small")
    objects = {f"s{i:03d}": payload(1 + (i * 7919) % 100_000, f"small-{i}") for i in range(160)}
    for key, data in objects.items():
        s3.put_object(Bucket="small", Key=key, Body=data)
    victim = "n3"
    held = _wipe(c, victim)
    assert len(held) >= 60
    code, report = pocket(c, "scrub", "--json", ok=(1,))
    assert {r["archive"] for r in report["missing"]} == set(held)
    batches = _served(c, victim, "PUT", "/v1/{disk}/batch")
    _, fixed = pocket(c, "repair", "--json")
    assert fixed["failed"] == [] and fixed["remaining"] == 0 and fixed["fragments"] == len(held)
    assert _rebuilt(c, victim) == held
    assert sum(len(a) for a in held.values()) > 4 * (256 << 10), "more than a gateway's four batches of data"
    assert _served(c, victim, "PUT", "/v1/{disk}/batch") - batches < sum(len(a) for a in held.values()) / (256 << 10), \
        "the rebuilt archives went in fewer, larger batches than a gateway's"
    check_all(s3, "small", objects)
