"""The migrating gateway with its source unreachable, and copies, tagging and multi-object
deletes reaching both sides (test_migrate_gateway.py and test_migrate_gateway_verify.py
have the rest; apart so that xdist runs the files side by side: every test starts its own
source and cluster)."""
from __future__ import annotations

import random
import signal

import pytest
from botocore.exceptions import ClientError

from .harness import wait_for
from .migrate_world import BUCKET, copied_and_verified, enable, metric, migrate, status


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
    # polled over HTTP (the gauge counts the index's journal at each scrape), not a process per look
    wait_for("the journal to drain", lambda: metric(c, f'pocket_migrate_journal_entries{{bucket="{BUCKET}"}}') == 0)
    assert status(c)["journal"] == 0
    assert src.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == later
    assert "new" not in {o["Key"] for o in src.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert migrate(c, "rollback", BUCKET)["buckets"][0]["state"] == "dual-write"
    assert gw.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == later


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
