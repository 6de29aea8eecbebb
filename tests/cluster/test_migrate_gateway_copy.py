"""The migrating gateway with its source unreachable, and with `pocket migrate copy` and
`verify` run beside it (test_migrate_gateway.py has the rest; apart so that xdist runs
the two files side by side: every test starts its own source and cluster)."""
from __future__ import annotations

import os
import random
import signal
import time

import pytest
from botocore.exceptions import ClientError

from .harness import REPO, wait_for
from .migrate_world import BUCKET, Writer, copied_and_verified, enable, holds, metric, migrate, status


def test_source_unreachable_fails_before_cutover_and_is_journaled_after(world):
    source, link, c = world
    src, gw = source.client(), c.client(retries=1)
    src.create_bucket(Bucket=BUCKET)
    enable(c, link)
    first = random.Random(1).randbytes(300_000)
    gw.put_object(Bucket=BUCKET, Key="kept", Body=first)

    link.cut()
    with pytest.raises(ClientError) as e:
        gw.put_object(Bucket=BUCKET, Key="kept", Body=b"never acknowledged")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    with pytest.raises(ClientError) as e:
        gw.get_object(Bucket=BUCKET, Key="kept")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    link.restore()
    assert gw.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == first
    assert src.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == first

    copied_and_verified(c)
    migrate(c, "cutover", BUCKET)
    link.cut()
    later = random.Random(2).randbytes(200_000)
    gw.put_object(Bucket=BUCKET, Key="kept", Body=later)          # Pocket is authoritative now
    gw.put_object(Bucket=BUCKET, Key="new", Body=later[:1000])
    gw.delete_object(Bucket=BUCKET, Key="new")
    assert gw.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == later
    assert status(c)["journal"] >= 3
    assert metric(c, 'pocket_migrate_writes_total{bucket="moving",outcome="journaled",side="source"}') >= 3
    assert metric(c, 'pocket_migrate_journal_entries{bucket="moving"}') >= 3
    refused = migrate(c, "rollback", BUCKET, ok=(1,))["buckets"][0]
    assert not refused["ok"] and "not reached the source" in refused["error"]

    c.signal("gateway", signal.SIGKILL)       # the journal is in the index: a crash loses none of it
    c.start_gateway()
    assert status(c)["journal"] >= 3
    link.restore()
    wait_for("the journal to drain", lambda: status(c)["journal"] == 0)
    assert src.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == later
    assert "new" not in {o["Key"] for o in src.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert migrate(c, "rollback", BUCKET)["buckets"][0]["state"] == "dual-write"
    assert gw.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == later


def _built(command: str) -> bool:
    with open(os.path.join(REPO, "cli", "migrate.py"), encoding="utf-8") as f:
        return f'_not_built("{command}")' not in f.read()


def seed(src, rng: random.Random) -> dict:
    """Objects already at the source before enable (what `copy` must move): sizes from 0 bytes to
    a multipart object with an unusual part size, keys with unicode, spaces, % and +."""
    model = {}
    for n, size in enumerate([0, 1, 1_000, 131_073, 400_000]):
        key = f"seed/{n} ü %2B+{n}"
        body, meta, tags = rng.randbytes(size), {"seeded": str(n)}, {"n": str(n)}
        src.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta, Tagging=f"n={n}",
                       ContentDisposition=f'attachment; filename="{n}.bin"')
        model[key] = (body, meta, tags)
    parts = [rng.randbytes((5 << 20) + 3), rng.randbytes(77_777)]
    upload = src.create_multipart_upload(Bucket=BUCKET, Key="seed/multi part", Metadata={"seeded": "multi"})
    done = [{"PartNumber": i, "ETag": src.upload_part(Bucket=BUCKET, Key="seed/multi part", PartNumber=i,
                                                      UploadId=upload["UploadId"], Body=p)["ETag"]}
            for i, p in enumerate(parts, 1)]
    src.complete_multipart_upload(Bucket=BUCKET, Key="seed/multi part", UploadId=upload["UploadId"],
                                  MultipartUpload={"Parts": done})
    model["seed/multi part"] = (b"".join(parts), {"seeded": "multi"}, {})
    return model


@pytest.mark.skipif(not (_built("copy") and _built("verify")),
                    reason="`pocket migrate copy` and `verify` are mig-data's half: this runs once both are merged")
def test_end_to_end_with_copy_and_verify(world):
    """plan-less: enable -> copy -> verify -> cutover -> rollback -> copy/verify -> cutover -> detach,
    with the writer writing throughout; ETags of copied objects (multipart too) equal the source's."""
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    seeded = seed(src, random.Random(12))
    etags = {k: src.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in seeded}
    enable(c, link)
    writer = Writer(gw, seed=13)
    writer.model.update(seeded)
    writer.start()

    def copy_until_backfilled():
        """What an operator does: a pass during which keys kept changing at the source leaves
        the bucket in dual-write and says to run copy again; so run it again, until backfilled."""
        deadline = time.monotonic() + 300
        while True:
            report = migrate(c, "copy", BUCKET)
            if status(c)["state"] == "backfilled":
                return
            assert report["buckets"][0]["changed_during_copy"] > 0, report   # the only reason to stay behind
            assert time.monotonic() < deadline, f"copy never reached backfilled: {report}"

    def copy_and_verify():
        copy_until_backfilled()
        with writer.paused():
            report = migrate(c, "verify", BUCKET)
        assert status(c)["state"] == "verified", report

    try:
        copy_and_verify()
        # the pass that finished the backfill counted too (its counters were lost in the move once)
        assert status(c)["counters"]["copied_objects"] >= len(seeded)
        # the dashboard's progress panel: what the backfill copied, as the running gateway exports it
        assert metric(c, f'pocket_migrate_objects_copied{{bucket="{BUCKET}"}}') == status(c)["objects_copied"] > 0
        assert migrate(c, "cutover", BUCKET)["buckets"][0]["state"] == "cutover"
        ops = writer.ops
        wait_for("writes after cutover", lambda: writer.ops >= ops + 20 or writer.errors)
        with writer.paused():
            holds(gw, writer.model, "Pocket after cutover")
            holds(src, writer.model, "source mirrored after cutover")
            for key, etag in etags.items():
                assert gw.head_object(Bucket=BUCKET, Key=key)["ETag"] == etag, key
        assert migrate(c, "rollback", BUCKET)["buckets"][0]["state"] == "dual-write"
        copy_and_verify()
        assert migrate(c, "cutover", BUCKET)["buckets"][0]["state"] == "cutover"
        with writer.paused():
            assert migrate(c, "detach", BUCKET)["buckets"][0]["state"] == "detached"
            at_detach = dict(writer.model)
    finally:
        writer.stop()
    assert not writer.errors, writer.errors
    holds(gw, writer.model, "Pocket alone after detach")
    holds(src, at_detach, "source as it was at detach")


def test_copy_tagging_and_multi_delete_reach_both_sides(world):
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    enable(c, link)
    body = random.Random(21).randbytes(250_000)
    gw.put_object(Bucket=BUCKET, Key="orig", Body=body, Metadata={"v": "1"})
    gw.copy_object(Bucket=BUCKET, Key="copy 1", CopySource={"Bucket": BUCKET, "Key": "orig"})
    gw.copy_object(Bucket=BUCKET, Key="copy 2", CopySource={"Bucket": BUCKET, "Key": "orig"},
                   MetadataDirective="REPLACE", Metadata={"v": "2"}, ContentType="text/x-test")
    gw.put_object_tagging(Bucket=BUCKET, Key="copy 1", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    gw.put_object(Bucket=BUCKET, Key="gone a", Body=b"a")
    gw.put_object(Bucket=BUCKET, Key="gone b", Body=b"b")
    result = gw.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "gone a"}, {"Key": "gone b"}]})
    assert len(result["Deleted"]) == 2 and not result.get("Errors")
    copied_and_verified(c)
    migrate(c, "cutover", BUCKET)     # from here on the gateway reads Pocket: both sides are checked
    for client, side in ((src, "source"), (gw, "Pocket")):
        keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert keys == {"orig", "copy 1", "copy 2"}, side
        c2 = client.get_object(Bucket=BUCKET, Key="copy 2")
        assert c2["Body"].read() == body and c2["Metadata"] == {"v": "2"} and c2["ContentType"] == "text/x-test", side
        assert client.get_object_tagging(Bucket=BUCKET, Key="copy 1")["TagSet"] == [{"Key": "t", "Value": "1"}], side
    gw.put_object_tagging(Bucket=BUCKET, Key="orig", Tagging={"TagSet": [{"Key": "after", "Value": "cutover"}]})
    gw.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "copy 2"}]})
    assert src.get_object_tagging(Bucket=BUCKET, Key="orig")["TagSet"] == [{"Key": "after", "Value": "cutover"}]
    assert {o["Key"] for o in src.list_objects_v2(Bucket=BUCKET)["Contents"]} == {"orig", "copy 1"}
