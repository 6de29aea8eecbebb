"""What a copy asks of its source, seen by a relay in front of a real SeaweedFS
(source_meter.py): at most copier.LARGE_STREAMS large bodies stream at once per copy
process whatever its concurrency, and every request for an object or a part (HEAD
partNumber=N included) is a presigned URL, botocore only the fallback."""
from __future__ import annotations

import dataclasses
import random

import pytest

from storage.migrate.copier import LARGE_STREAMS

from .migrate_data import put_multipart, snapshot
from .source_meter import meter_in_front
from .sources import pocket_migrate, start_seaweedfs

MIB = 1 << 20
WIDE = 3 * LARGE_STREAMS          # single-PUT objects over 1 MiB: three times the slots
PARTS = [5 * MIB + 3, 5 * MIB + 1, 17]


@pytest.fixture
def metered(tmp_path):
    source = start_seaweedfs(str(tmp_path / "weed"))
    with meter_in_front(source) as meter:
        s3, rnd = source.client(), random.Random(8)
        s3.create_bucket(Bucket="wide")
        for i in range(WIDE):
            s3.put_object(Bucket="wide", Key=f"large/{i:02d}", Body=rnd.randbytes(MIB + 4096 * i + 1))
        put_multipart(s3, "wide", "parts/three", [rnd.randbytes(size) for size in PARTS])
        yield source, meter


def test_large_bodies_stream_at_most_large_streams_at_once_and_every_read_is_presigned(metered, embedded):
    source, meter = metered
    through_meter = dataclasses.replace(source, endpoint=meter.endpoint)
    _, report = pocket_migrate(embedded, through_meter, "copy", "wide", "--workers", "1", "--concurrency", "64",
                               "--json")
    assert report["ok"] and report["buckets"][0]["copied"] == WIDE + 1
    # 24 objects wanted at once, 8 slots: a copy without the limit streams all 24 together
    assert meter.peak == LARGE_STREAMS
    heads = [(query, presigned) for method, query, presigned in meter.requests if method == "HEAD"]
    assert sorted(q.split("partNumber=")[1].split("&")[0] for q, _ in heads if "partNumber=" in q) == ["1", "2", "3"]
    assert len(heads) == 1 + len(PARTS) and all(presigned for _, presigned in heads)
    gets = [presigned for method, query, presigned in meter.requests if method == "GET" and "list-type" not in query
            and "versioning" not in query and "versions" not in query and query]
    assert len(gets) == WIDE + len(PARTS) and all(gets)
    assert snapshot(embedded.client(), "wide") == snapshot(source.client(), "wide")
