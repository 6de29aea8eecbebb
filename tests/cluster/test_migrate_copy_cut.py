"""Large bodies copied from real sources (SeaweedFS and moto) through a relay that drops the
connection of each body's first GET midway: the copy asks again for the rest, from the
first byte it did not receive, and Pocket holds the source's bytes exactly, a multipart
object's ETag included."""
from __future__ import annotations

import dataclasses
import random

import pytest

from .migrate_data import snapshot
from .source_meter import SourceMeter
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
    meter = SourceMeter(source.endpoint, pace=0, cut=CUT)
    try:
        s3, rnd = source.client(), random.Random(29)
        s3.create_bucket(Bucket="cut")
        for key, size in SIZES.items():
            s3.put_object(Bucket="cut", Key=key, Body=rnd.randbytes(size))
        up = s3.create_multipart_upload(Bucket="cut", Key="parts/odd")
        done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="cut", Key="parts/odd", UploadId=up["UploadId"],
                                                          PartNumber=n, Body=rnd.randbytes(size))["ETag"]}
                for n, size in enumerate(PARTS, 1)]
        s3.complete_multipart_upload(Bucket="cut", Key="parts/odd", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": done})
        yield source, meter
    finally:
        meter.close()
        source.close()


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
