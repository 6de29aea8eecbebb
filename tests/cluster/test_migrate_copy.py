"""`pocket migrate copy` from real S3 servers: every version copied faithfully (bytes,
headers, metadata, tags, Last-Modified, ETag, version ids and their order), resumable
after SIGKILL with nothing copied twice, shared by several workers."""
from __future__ import annotations

import json
import os
import random

import pytest

from tests.loaded_modules import loaded, run_pocket

from .migrate_data import put_multipart, seed_checksums, seed_plain, seed_versioned, snapshot
from .sources import pocket_migrate, start_moto, start_pocket_source, start_seaweedfs


# source requests answered through presigned URLs (storage/migrate/presigned_get.py): a GET
# of each single-PUT object (read whole up to 1 MiB, streamed above: "plain" has one of
# 2.5 MB); for a multipart object ("plain" has one of 3 parts) a HEAD, a HEAD partNumber=N
# and a ranged GET of each part. Each real source must verify the URLs' signatures, Range
# and partNumber included, or the copy falls back to botocore and the count is short
BY_URL = {"plain": 6 + 1 + 3 + 3, "history": 6}
# versions the embedded gateway stores for the copy (storage/migrate/gateway_copy.py): those,
# and delete markers
VIA_GATEWAY = {"plain": 5, "history": 8}


@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    with start_seaweedfs(str(tmp_path_factory.mktemp("weed"))) as source:
        s3 = source.client()
        seed_plain(s3, "plain")
        seed_versioned(s3, "history")
        yield source


def test_copy_is_faithful_and_a_second_pass_copies_nothing(weed, embedded):
    _, report = pocket_migrate(embedded, weed, "copy", "plain", "--json")
    assert report["ok"] and report["buckets"][0]["copied"] == 7 and report["buckets"][0]["errors"] == 0
    assert report["buckets"][0]["read_presigned"] == BY_URL["plain"]
    assert report["buckets"][0]["written_via_gateway"] == VIA_GATEWAY["plain"]
    _, report = pocket_migrate(embedded, weed, "copy", "history", "--json")
    assert report["ok"] and report["buckets"][0]["copied"] == 8   # 6 versions, 2 delete markers
    assert report["buckets"][0]["read_presigned"] == BY_URL["history"]
    assert report["buckets"][0]["written_via_gateway"] == VIA_GATEWAY["history"]
    for bucket in ("plain", "history"):
        assert snapshot(embedded.client(), bucket) == snapshot(weed.client(), bucket)
    # verify asks SeaweedFS (which checks every signature) by presigned HEAD and GET: with
    # --deep one GET per object version, whose headers are its HEAD's, and for the multipart
    # one ("plain" has one) a HEAD too (delete markers need neither)
    _, verified = pocket_migrate(embedded, weed, "verify", "plain", "history", "--deep", "--json")
    assert verified["clean"], verified
    assert [b["read_presigned"] for b in verified["buckets"]] == [7 + 1, 6]
    assert [b["headed"] for b in verified["buckets"]] == [1, 0]
    # a second pass finds everything equal
    _, again = pocket_migrate(embedded, weed, "copy", "plain", "history", "--json")
    assert [(b["copied"], b["skipped"]) for b in again["buckets"]] == [(0, 7), (0, 8)]
    # what changed at the source since is copied again, and only that
    s3 = weed.client()
    s3.put_object(Bucket="plain", Key="small.txt", Body=b"rewritten at the source", Metadata={"v": "2"})
    s3.put_object(Bucket="history", Key="doc.txt", Body=b"a newer version")
    _, third = pocket_migrate(embedded, weed, "copy", "plain", "history", "--json")
    assert [(b["copied"], b["skipped"]) for b in third["buckets"]] == [(1, 6), (1, 8)]
    for bucket in ("plain", "history"):
        assert snapshot(embedded.client(), bucket) == snapshot(s3, bucket)


def test_copy_from_moto_keeps_checksums_and_version_ids(embedded, tmp_path):
    """moto hands out UUID version ids and keeps x-amz-checksum-*: both survive the copy,
    the multipart object's FULL_OBJECT CRC64NVME recomputed from its parts and checked."""
    moto = start_moto(str(tmp_path / "moto"))
    try:
        s3 = moto.client()
        seed_plain(s3, "plain")
        seed_versioned(s3, "history")
        seed_checksums(s3, "sums")
        _, report = pocket_migrate(embedded, moto, "copy", "plain", "history", "sums", "--json")
        assert report["ok"] and [b["copied"] for b in report["buckets"]] == [7, 8, 3]
        assert [b["read_presigned"] for b in report["buckets"][:2]] == [BY_URL["plain"],
                                                                        BY_URL["history"]]
        for bucket in ("plain", "history", "sums"):
            assert snapshot(embedded.client(), bucket) == snapshot(s3, bucket)
        head = embedded.client().head_object(Bucket="sums", Key="mp-crc64", ChecksumMode="ENABLED")
        assert head["ChecksumCRC64NVME"] == s3.head_object(Bucket="sums", Key="mp-crc64",
                                                           ChecksumMode="ENABLED")["ChecksumCRC64NVME"]
        assert head["ETag"].endswith('-2"')
        _, verified = pocket_migrate(embedded, moto, "verify", "plain", "history", "sums", "--deep", "--json")
        assert verified["clean"]
    finally:
        moto.close()


def test_copy_from_another_pocket(embedded, tmp_path):
    """A second Pocket as the source (moving between sites): its own version ids survive."""
    other = start_pocket_source(str(tmp_path / "other"))
    try:
        s3 = other.client()
        seed_plain(s3, "plain")
        seed_versioned(s3, "history")
        _, report = pocket_migrate(embedded, other, "copy", "plain", "history", "--json")
        assert report["ok"] and [b["copied"] for b in report["buckets"]] == [7, 8]
        assert [b["read_presigned"] for b in report["buckets"]] == [BY_URL["plain"],
                                                                    BY_URL["history"]]
        for bucket in ("plain", "history"):
            assert snapshot(embedded.client(), bucket) == snapshot(s3, bucket)
    finally:
        other.close()


def test_large_objects_are_copied_and_verified_without_aiohttp(weed, embedded, tmp_path):
    """Only small GETs and what the copy hands to the gateway go through aiohttp, whose
    import (two TLS contexts, ~20 attrs classes) was a tenth of a 128 MiB copy's CPU: a
    bucket of large and multipart objects is copied and deep-verified without it, and
    without cryptography (~13 ms), which only an encrypted version needs."""
    s3, rng = weed.client(), random.Random(17)
    s3.create_bucket(Bucket="big")
    put_multipart(s3, "big", "parts.bin", [rng.randbytes(5 << 20), rng.randbytes((2 << 20) + 11)])
    s3.put_object(Bucket="big", Key="single.bin", Body=rng.randbytes((3 << 19) + 7))
    for args in (["copy", "big"], ["verify", "big", "--deep"]):
        proc, code, modules = run_pocket(tmp_path / "modules.json", ["migrate", *args, "--json", "--config",
                                         embedded.config, "--source-endpoint", weed.endpoint],
                                         {**os.environ, **weed.credentials_env()}, timeout=300)
        assert code == 0, proc.stdout + proc.stderr
        assert loaded(modules, "aiohttp", "cryptography") == [], args
    report = json.loads(proc.stdout)["buckets"][0]
    assert report["clean"] and report["deep_read"] == 2 and report["headed"] == 1, report
    assert snapshot(embedded.client(), "big") == snapshot(s3, "big")
