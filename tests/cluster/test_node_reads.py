"""GETs through node processes (`pocket up --nodes 6`), whose fragments come over one
streamed response each for a whole read (storage/objects/fragment_streams.py): byte for
byte across segments, windows and ranges, and a record rotten midway through a stream
still caught by the gateway and served from parity."""
import random
import re
import urllib.request

import pytest

from storage import layout

from .archives import archive_parts, archives_of, flip_archive_bit
from .harness import QUIET, ProcCluster, metric

SEG = 1 << 20          # the default segment; the reader's windows are 4 of them
ROUTE = 'method="GET",route="/v1/{disk}/archives/{name}",status="200"'


def archive_gets(c, route: str = ROUTE) -> float:
    """Ranged archive reads (or other requests of `route`) every node has answered."""
    total = 0.0
    for node in c.node_ids:
        with urllib.request.urlopen(f"http://127.0.0.1:{c.node_ports[node]}/metrics", timeout=10) as r:
            found = re.search(r"^pocket_node_requests_total\{" + re.escape(route) + r"\} (\S+)$", r.read().decode(),
                              re.M)
        total += float(found.group(1)) if found else 0.0
    return total


@pytest.fixture
def over_the_link(tmp_path):
    """Six quiet nodes reached over the node link only, as if on another host (storage.same_host)."""
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6, storage={"same_host": False}, sections=QUIET)
    c.start()
    yield c
    c.close()


def test_reads_through_nodes_are_byte_exact_across_windows_and_ranges(over_the_link):
    c = over_the_link
    s3 = c.client()
    s3.create_bucket(Bucket="streams")
    body = random.Random(71).randbytes(9 * SEG + 4321)   # ten segments, three windows, the last short
    s3.put_object(Bucket="streams", Key="ten", Body=body)

    before = archive_gets(c)
    assert s3.get_object(Bucket="streams", Key="ten")["Body"].read() == body
    assert archive_gets(c) - before == 4, "one request per data fragment for the whole GET, not one per window"

    for first, last in ((0, 0), (SEG - 1, SEG), (4 * SEG - 7, 4 * SEG + 6), (3 * SEG + 11, 8 * SEG + 5),
                        (5 * SEG + 3, len(body) - 1), (len(body) - 1, len(body) - 1), (2, len(body) - 3)):
        got = s3.get_object(Bucket="streams", Key="ten", Range=f"bytes={first}-{last}")["Body"].read()
        assert got == body[first:last + 1], (first, last)


def test_a_record_rotten_midway_through_a_streamed_fragment_is_caught_and_read_from_parity(six):
    c = six
    s3 = c.client()
    s3.create_bucket(Bucket="rot")
    body = random.Random(72).randbytes(11 * SEG + 99)
    s3.put_object(Bucket="rot", Key="deep", Body=body)
    geo = layout.Geometry(len(body), SEG, 4)
    victim = next(ref for ref in archives_of(c, "rot", "deep") if archive_parts(ref)[1].endswith(".1"))
    flip_archive_bit(victim, geo.record_offset(6) + layout.RECORD_OVERHEAD + 5000)   # the second window

    assert s3.get_object(Bucket="rot", Key="deep")["Body"].read() == body
    assert metric(c.endpoint, "pocket_fragments_damaged_total") == 1
    assert "segment 6" in c.log("gateway")
    got = s3.get_object(Bucket="rot", Key="deep", Range=f"bytes={6 * SEG - 10}-{7 * SEG + 10}")["Body"].read()
    assert got == body[6 * SEG - 10:7 * SEG + 11]


def test_a_gateway_beside_its_nodes_reads_their_disks_itself(six):
    """Nodes on the gateway's host (node/same_host.py): archive files and pack records are
    read in the disk folders, byte for byte, and no node is asked for a fragment."""
    c = six
    s3 = c.client()
    s3.create_bucket(Bucket="near")
    rng = random.Random(72)
    bodies = {f"k{size}": rng.randbytes(size) for size in (1, 4096, 100_000, 1 << 20, 3 * SEG + 5)}
    for key, body in bodies.items():
        s3.put_object(Bucket="near", Key=key, Body=body)
    fetches = 'method="PUT",route="/v1/{disk}/fetch",status="200"'
    metric(c.endpoint, "pocket_repair_queue_length")      # the gateway answers
    before = archive_gets(c), archive_gets(c, fetches)
    for _ in range(2):      # the first may find a disk not confirmed yet: asked of its node
        for key, body in bodies.items():
            assert s3.get_object(Bucket="near", Key=key)["Body"].read() == body, key
            got = s3.get_object(Bucket="near", Key=key, Range="bytes=0-70000")["Body"].read()
            assert got == body[:70001], key
        after = archive_gets(c), archive_gets(c, fetches)
        if after == before:
            break
        before = after
    assert after == before, "a node was asked for fragments its disk folder here holds"
