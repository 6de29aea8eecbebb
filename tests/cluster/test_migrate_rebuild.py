"""The source's version ids and Last-Modified survive `pocket index rebuild`.

Applications that stored S3 version ids keep using them against Pocket. A backfilled
version carries its source id in its manifest; a version written during dual-write gets
its id from the source only after its archives are sealed, so it goes to the disks as a
record beside them. Here a versioned bucket is dual-written (single PUTs, a multipart
upload, a delete) and backfilled, the index is deleted and rebuilt from the disks alone,
and every version and delete marker the source lists is still found in Pocket by the
source's version id, with the same bytes and the source's Last-Modified. One PUT is
dual-written while the source stalls for two seconds, so the source stamps it two seconds
after Pocket stored it: Pocket must take the source's time (a verify checks it), and keep
it through the rebuild.

A rebuild drops a migration's state (it lives only in the index), so it refuses while a
bucket migrates, from the index or, when that is gone, from the marker `enable` leaves on
the disks, unless forced; it goes ahead once `detach` removed the marker.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import threading
import time

import pytest
from botocore.exceptions import ClientError

from . import forkserver
from .harness import pocket
from .migrate_world import copied_and_verified
from .sources import enable, moto_and_pocket

BUCKET = "moving"


def _versions(s3) -> dict:
    """{(key, version id): sha256 of the bytes, or "marker"} as `s3` lists and reads them."""
    out = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        for m in page.get("DeleteMarkers", ()):
            out[(m["Key"], m["VersionId"])] = "marker"
        for v in page.get("Versions", ()):
            body = s3.get_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
            out[(v["Key"], v["VersionId"])] = hashlib.sha256(body).hexdigest()
    return out


def _put_while_the_source_stalls(source, gw, key: str, body: bytes, seconds: float = 2.0) -> None:
    """A PUT whose upload to the source waits `seconds` (the source's process stopped)."""
    done = []
    put = threading.Thread(target=lambda: done.append(gw.put_object(Bucket=BUCKET, Key=key, Body=body)))
    os.killpg(source.proc.pid, signal.SIGSTOP)
    try:
        put.start()
        time.sleep(seconds)        # the stall itself: what the test is about
    finally:
        os.killpg(source.proc.pid, signal.SIGCONT)
    put.join(60)
    assert done, "the PUT did not succeed once the source was back"


def test_source_version_ids_survive_an_index_rebuild(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True) as (source, c):
        src, rnd = source.client(), random.Random(9)
        src.create_bucket(Bucket=BUCKET)
        src.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for i in range(2):                                     # history from before the migration
            src.put_object(Bucket=BUCKET, Key="old", Body=rnd.randbytes(1000 + i))
        src.put_object(Bucket=BUCKET, Key="gone", Body=rnd.randbytes(300))
        src.delete_object(Bucket=BUCKET, Key="gone")
        enable(c, BUCKET, source.endpoint)
        gw = c.client()
        for i in range(2):                                     # dual-written versions
            gw.put_object(Bucket=BUCKET, Key="new", Body=rnd.randbytes(2000 + i))
        gw.put_object(Bucket=BUCKET, Key="old", Body=rnd.randbytes(700))
        _put_while_the_source_stalls(source, gw, "slow", rnd.randbytes(3000))
        up = gw.create_multipart_upload(Bucket=BUCKET, Key="big")
        parts = [{"PartNumber": n, "ETag": gw.upload_part(Bucket=BUCKET, Key="big", UploadId=up["UploadId"],
                                                          PartNumber=n, Body=rnd.randbytes(size))["ETag"]}
                 for n, size in ((1, 5 << 20), (2, 4321))]
        gw.complete_multipart_upload(Bucket=BUCKET, Key="big", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": parts})
        gw.delete_object(Bucket=BUCKET, Key="new")
        pocket(c, "migrate", "copy", BUCKET, "--json")        # the history from before
        pocket(c, "migrate", "verify", BUCKET, "--json")      # clean: Last-Modified included

        want = _versions(src)
        assert len(want) == 10 and list(want.values()).count("marker") == 2
        c.stop("gateway")
        shutil.rmtree(f"{c.root}/index")
        pocket(c, "index", "rebuild", "--json", "--force")    # refused without: the bucket still migrates
        c.start_gateway()
        gw = c.client()       # the migration's state went with the index: Pocket answers alone
        assert _versions(gw) == want
        for (key, vid), seen in want.items():
            if seen == "marker":
                with pytest.raises(ClientError) as e:
                    gw.head_object(Bucket=BUCKET, Key=key, VersionId=vid)
                assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405, (key, vid)
            else:
                head = gw.head_object(Bucket=BUCKET, Key=key, VersionId=vid)
                assert head["VersionId"] == vid
                assert head["LastModified"] == src.head_object(Bucket=BUCKET, Key=key, VersionId=vid)["LastModified"], \
                    (key, vid)


def test_a_write_mirrored_late_after_cutover_keeps_the_sources_last_modified(tmp_path, monkeypatch):
    """After cutover Pocket leads and the source takes the write afterwards, stamping its
    own time. Pocket adopts that time, so after a rollback the sides agree: before, a write
    whose mirror landed while a copy pass listed the source was skipped by it ("written
    through the gateway"), and verify then blocked the next cutover (CI saw it under load)."""
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True) as (source, c):
        src, rnd = source.client(), random.Random(11)
        src.create_bucket(Bucket=BUCKET)
        src.put_object(Bucket=BUCKET, Key="before", Body=rnd.randbytes(1500))
        enable(c, BUCKET, source.endpoint)
        pocket(c, "migrate", "copy", BUCKET, "--json")
        pocket(c, "migrate", "verify", BUCKET, "--json")
        assert pocket(c, "migrate", "cutover", BUCKET, "--json")[1]["buckets"][0]["state"] == "cutover"
        gw = c.client()
        body = rnd.randbytes(2500)
        _put_while_the_source_stalls(source, gw, "late", body)
        assert src.get_object(Bucket=BUCKET, Key="late")["Body"].read() == body
        assert gw.head_object(Bucket=BUCKET, Key="late")["LastModified"] == \
            src.head_object(Bucket=BUCKET, Key="late")["LastModified"]
        assert pocket(c, "migrate", "rollback", BUCKET, "--json")[1]["buckets"][0]["state"] == "dual-write"
        report = pocket(c, "migrate", "verify", BUCKET, "--json")[1]
        assert report["clean"] and report["buckets"][0]["findings"] == []


def _rebuild(c, *extra):
    return forkserver.run(["index", "rebuild", "--config", c.config, *extra], timeout=300)


def _migrating(c) -> list[dict]:
    return pocket(c, "migrate", "status", "--json")[1]["buckets"]


def test_rebuild_refuses_while_a_bucket_migrates_and_goes_ahead_after_detach(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True) as (source, c):
        src, gw = source.client(), c.client()
        src.create_bucket(Bucket=BUCKET)
        src.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "ops"}]})
        assert enable(c, BUCKET, source.endpoint)["buckets"][0]["state"] == "dual-write"
        body = random.Random(61).randbytes(40_000)
        gw.put_object(Bucket=BUCKET, Key="written in dual-write", Body=body)
        c.stop("gateway")

        refused = _rebuild(c)          # the index still knows: it names the bucket and what is owed
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert BUCKET in refused.stderr and "pocket migrate status" in refused.stderr and "--force" in refused.stderr
        assert "1 dirty keys" in refused.stderr, refused.stderr
        [row] = _migrating(c)          # nothing changed
        assert row["state"] == "dual-write" and row["dirty_keys"] == 1

        shutil.rmtree(f"{c.root}/index")     # disaster recovery: the disks alone still say so
        refused = _rebuild(c)
        assert refused.returncode == 1 and BUCKET in refused.stderr and "the disks say" in refused.stderr, \
            refused.stdout + refused.stderr

        forced = _rebuild(c, "--force")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert _migrating(c) == []
        c.start_gateway()
        gw = c.client()
        assert gw.get_object(Bucket=BUCKET, Key="written in dual-write")["Body"].read() == body
        assert gw.get_bucket_tagging(Bucket=BUCKET)["TagSet"] == [{"Key": "team", "Value": "ops"}]

        # migrated again to the end: detach removes the marker and the rebuild goes ahead
        assert enable(c, BUCKET, source.endpoint)["buckets"][0]["state"] == "dual-write"
        copied_and_verified(c)
        pocket(c, "migrate", "cutover", BUCKET, "--json")
        pocket(c, "migrate", "detach", BUCKET, "--json")
        c.stop("gateway")
        done = _rebuild(c)
        assert done.returncode == 0, done.stdout + done.stderr
        c.start_gateway()
        assert c.client().get_object(Bucket=BUCKET, Key="written in dual-write")["Body"].read() == body
