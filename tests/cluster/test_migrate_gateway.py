"""The gateway's side of a migration out of S3: dual writes, reads from the authoritative
side, the journal when the other side is down, and every transition while a writer writes.

Real processes: a moto S3 server as the source (reached through a SourceLink the test can
cut), a Pocket cluster, and the `pocket migrate` commands. Where a step is mig-data's
(`pocket migrate copy` and `verify`), `copied_and_verified` records its outcome through
the state module instead: in these tests every object is written through the gateway
after `enable`, so there is nothing to backfill and both sides hold the same writes.
"""
from __future__ import annotations

import random

from .migrate_world import (BUCKET, Writer, copied_and_verified, cut_over_under_writes, enable, holds, migrate,
                            rolled_back_under_writes, status)


def test_writer_keeps_writing_through_every_transition(world):
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    enable(c, link)
    writer = Writer(gw, seed=9)
    writer.start()
    try:
        writer.writes_more(30, "writes in dual-write")
        with writer.paused():
            holds(src, writer.model, "source, authoritative in dual-write")
            holds(gw, writer.model, "gateway in dual-write (reads from the source)")
        copied_and_verified(c)
        cut_over_under_writes(c, writer, src, gw)
        rolled_back_under_writes(c, writer, src, 20)
        copied_and_verified(c)
        assert migrate(c, "cutover", BUCKET)["buckets"][0]["state"] == "cutover"
        with writer.paused():   # what the writer wrote up to detach is on the source, nothing after
            assert migrate(c, "detach", BUCKET)["buckets"][0]["state"] == "detached"
            at_detach = dict(writer.model)
        writer.writes_more(20, "writes after detach")
    finally:
        writer.stop()
    assert not writer.errors, writer.errors
    holds(gw, writer.model, "Pocket alone after detach")
    holds(src, at_detach, "source left as it was at detach")
    assert status(c)["journal"] == 0


def test_multipart_upload_begun_before_cutover_completes_on_both_sides(world):
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    enable(c, link)
    rng = random.Random(5)
    parts = [rng.randbytes(5 << 20), rng.randbytes(5 << 20), rng.randbytes(123_457)]
    upload = gw.create_multipart_upload(Bucket=BUCKET, Key="big", Metadata={"kind": "multi"},
                                        Tagging="stage=begun%20before&n=3")["UploadId"]
    done = [{"PartNumber": 1, "ETag": gw.upload_part(Bucket=BUCKET, Key="big", UploadId=upload, PartNumber=1,
                                                     Body=parts[0])["ETag"]}]
    copied_and_verified(c)
    migrate(c, "cutover", BUCKET)          # the upload began on the source: it finishes there too
    for n in (2, 3):
        done.append({"PartNumber": n, "ETag": gw.upload_part(Bucket=BUCKET, Key="big", UploadId=upload,
                                                             PartNumber=n, Body=parts[n - 1])["ETag"]})
    etag = gw.complete_multipart_upload(Bucket=BUCKET, Key="big", UploadId=upload,
                                        MultipartUpload={"Parts": done})["ETag"]
    whole = b"".join(parts)
    for client, side in ((gw, "Pocket"), (src, "source")):
        got = client.get_object(Bucket=BUCKET, Key="big")
        assert got["Body"].read() == whole, side
        assert got["ETag"] == etag and etag.endswith('-3"'), side
        assert got["Metadata"] == {"kind": "multi"}, side
        tags = client.get_object_tagging(Bucket=BUCKET, Key="big")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"stage": "begun before", "n": "3"}, side
    assert status(c)["journal"] == 0


def test_enable_carries_configuration_and_reads_come_from_the_source(world):
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    src.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    src.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["https://app.example"], "MaxAgeSeconds": 600}]})
    src.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "ops"}]})
    old = random.Random(3).randbytes(70_000)
    src.put_object(Bucket=BUCKET, Key="before enable/ü + %", Body=old, Metadata={"from": "source"},
                   CacheControl="max-age=60", Tagging="a=1")
    report = enable(c, link)
    assert report["created"] and "versioning Enabled" in report["carried"] and "cors" in report["carried"]
    assert "tags" in report["carried"] and not any("tags" in line for line in report["not_carried"]), report
    assert gw.get_bucket_tagging(Bucket=BUCKET)["TagSet"] == [{"Key": "team", "Value": "ops"}]
    assert gw.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert gw.get_bucket_cors(Bucket=BUCKET)["CORSRules"][0]["AllowedOrigins"] == ["https://app.example"]

    # not copied yet: answered by the source, headers, metadata and tags included
    got = gw.get_object(Bucket=BUCKET, Key="before enable/ü + %", Range="bytes=1000-1999")
    assert got["Body"].read() == old[1000:2000]
    head = gw.head_object(Bucket=BUCKET, Key="before enable/ü + %")
    assert head["Metadata"] == {"from": "source"} and head["CacheControl"] == "max-age=60"
    assert gw.get_object_tagging(Bucket=BUCKET, Key="before enable/ü + %")["TagSet"] == [{"Key": "a", "Value": "1"}]
    listed = gw.list_objects_v2(Bucket=BUCKET, Prefix="before", Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["before enable/"]
    put = gw.put_object(Bucket=BUCKET, Key="after", Body=b"new")
    assert put["VersionId"] in {v["VersionId"] for v in src.list_object_versions(Bucket=BUCKET)["Versions"]}
    assert status(c)["dirty_keys"] == 1
