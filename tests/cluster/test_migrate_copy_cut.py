"""Large bodies copied from real sources (SeaweedFS and moto) through a relay that drops the
connection of each body's first GET midway: the copy asks again for the rest, from the
first byte it did not receive, and Pocket holds the source's bytes exactly, a multipart
object's ETag included. And a body far larger than the copy's memory is streamed."""
from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys

import pytest

from .harness import REPO
from .migrate_data import put_multipart, snapshot
from .source_meter import meter_in_front
from .sources import pocket_migrate, start_moto, start_seaweedfs

MIB = 1 << 20
# around the 1 MiB chunks and segments: one byte over, one under, and neither
SIZES = {"single/one-over": MIB + 1, "single/one-under": 2 * MIB - 1, "single/odd": 3 * MIB + 12_345,
         "single/nine": 9 * MIB + 7}
# unusual part sizes (all but the last at least 5 MiB, as S3 and moto demand)
PARTS = [5 * MIB + 4097, 5 * MIB + 1, MIB + 3]
CUT = MIB + MIB // 2 + 17        # where each large GET is first cut: inside its second chunk


@pytest.fixture(params=["seaweedfs", "moto"])
def cut_source(request, tmp_path):
    start = {"seaweedfs": start_seaweedfs, "moto": start_moto}[request.param]
    source = start(str(tmp_path / request.param))
    with meter_in_front(source, pace=0, cut=CUT) as meter:
        s3, rnd = source.client(), random.Random(29)
        s3.create_bucket(Bucket="cut")
        for key, size in SIZES.items():
            s3.put_object(Bucket="cut", Key=key, Body=rnd.randbytes(size))
        put_multipart(s3, "cut", "parts/odd", [rnd.randbytes(size) for size in PARTS])
        yield source, meter


def test_bodies_cut_midway_are_read_on_from_where_they_broke(cut_source, embedded):
    source, meter = cut_source
    through_meter = dataclasses.replace(source, endpoint=meter.endpoint)
    _, report = pocket_migrate(embedded, through_meter, "copy", "cut", "--workers", "1", "--json")
    assert report["ok"] and report["buckets"][0]["copied"] == len(SIZES) + 1
    got, want = snapshot(embedded.client(), "cut"), snapshot(source.client(), "cut")
    assert got == want and want["versions"][("parts/odd", "null")]["etag"].endswith(f'-{len(PARTS)}"')
    asked = set(meter.ranges)
    # each body over CUT bytes was asked for again from byte CUT on, not from its start
    for key, size in SIZES.items():
        if size > CUT:
            assert (f"/cut/{key}", f"bytes={CUT}-{size - 1}") in asked, key
    offset = 0
    for size in PARTS:
        if size > CUT:
            assert ("/cut/parts/odd", f"bytes={offset + CUT}-{offset + size - 1}") in asked, offset
        offset += size


PEAK_OF = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def test_a_body_far_larger_than_memory_allows_is_copied_in_bounded_memory(tmp_path, embedded):
    """A 384 MiB single-PUT object copied by a process whose peak RSS stays far below it:
    the body is never held whole, however fast the source sends it."""
    source = start_seaweedfs(str(tmp_path / "weed"))
    try:
        s3 = source.client()
        s3.create_bucket(Bucket="huge")
        rnd = random.Random(31)
        s3.put_object(Bucket="huge", Key="one", Body=b"".join(rnd.randbytes(16 * MIB) for _ in range(24)))
        command = [sys.executable, "-m", "cli", "migrate", "copy", "huge", "--workers", "1", "--config",
                   embedded.config, "--source-endpoint", source.endpoint]
        peak_kib = int(subprocess.run([sys.executable, "-c", PEAK_OF, *command], cwd=REPO, check=True,
                                      capture_output=True, text=True, timeout=600,
                                      env={**os.environ, **source.credentials_env()}).stdout)
        assert snapshot(embedded.client(), "huge") == snapshot(source.client(), "huge")
        assert peak_kib * 1024 < 192 * MIB, f"peak RSS {peak_kib // 1024} MiB"
    finally:
        source.close()
