"""Bucket lifecycle against real processes: the configuration API, the background pass,
the one-shot `pocket lifecycle`, and that an index rebuild keeps the rules.

A lifecycle "day" is one second here (lifecycle.day_seconds, the testing knob)."""
import calendar
import datetime as dt
import hashlib
import re
import shutil
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from . import forkserver
from .conftest import payload
from .harness import OTHER_ACCESS_KEY, OTHER_SECRET_KEY, ProcCluster, pocket, wait_for
from .signing import send, sign

MiB = 1 << 20


@pytest.fixture(scope="module")
def lc_cluster(tmp_path_factory):
    """Background passes every half second; a day lasts one second."""
    c = ProcCluster(str(tmp_path_factory.mktemp("lc")), sections={"lifecycle": {"interval": 0.5, "day_seconds": 1}})
    c.start()
    yield c
    c.close()


def _code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _rule(rule_id, days=None, prefix="", **extra):
    rule = {"ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": prefix}, **extra}
    if days is not None:
        rule["Expiration"] = {"Days": days}
    return rule


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _exists(s3, bucket, key) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False


def test_configuration_put_get_delete_and_refusals(cluster, bucket):
    s3 = cluster.client()
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert _code(e) == ("NoSuchLifecycleConfiguration", 404)
    rules = [
        _rule("logs", 30, "logs/"),
        {"ID": "tagged", "Status": "Disabled", "Filter": {"And": {"Prefix": "t/", "Tags": [{"Key": "k", "Value": "v"}],
                                                                  "ObjectSizeGreaterThan": 10}},
         "Expiration": {"Date": dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)}},
        {"ID": "old", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 3},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got[0] == {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}}
    assert got[1]["Filter"]["And"] == {"Prefix": "t/", "Tags": [{"Key": "k", "Value": "v"}], "ObjectSizeGreaterThan": 10}
    assert got[1]["Expiration"]["Date"] == dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)
    assert got[2]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7, "NewerNoncurrentVersions": 3}
    assert got[2]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}

    refusals = [
        ([_rule("zero", 0)], "InvalidArgument"),
        ([_rule("same", 1), _rule("same", 2)], "InvalidArgument"),
        ([_rule("x" * 256, 1)], "InvalidArgument"),
        ([{**_rule("noon"), "Expiration": {"Date": dt.datetime(2031, 1, 1, 12, tzinfo=dt.timezone.utc)}}],
         "InvalidArgument"),
        ([{**_rule("cold", 10), "Transitions": [{"Days": 5, "StorageClass": "GLACIER"}]}], "NotImplemented"),
        ([{"ID": "only-cold", "Status": "Enabled", "Filter": {"Prefix": "c/"},
           "NoncurrentVersionTransitions": [{"NoncurrentDays": 0, "StorageClass": "DEEP_ARCHIVE"}]}], "NotImplemented"),
        # a bad Transition is the caller's 400 before Pocket's 501 (a date not at midnight, as botocore
        # sends s3-tests' "20220927"; no storage class S3 transitions to)
        ([{**_rule("late", 10), "Transitions": [{"Date": dt.datetime(1970, 8, 23, 0, 55, 27, tzinfo=dt.timezone.utc),
                                                  "StorageClass": "GLACIER"}]}], "InvalidArgument"),
        ([{**_rule("warm", 10), "Transitions": [{"Days": 5, "StorageClass": "STANDARD"}]}], "MalformedXML"),
        ([{**_rule("soon", 10), "Transitions": [{"Days": -1, "StorageClass": "GLACIER"}]}], "InvalidArgument"),
        ([_rule(f"r{i}", 1) for i in range(1001)], "InvalidArgument"),
    ]
    for bad, code in refusals:
        with pytest.raises(ClientError) as e:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": bad})
        assert e.value.response["Error"]["Code"] == code, bad[0]["ID"]
        assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == got   # nothing changed
    other = cluster.client(user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    with pytest.raises(ClientError) as e:
        other.delete_bucket_lifecycle(Bucket=bucket)
    assert _code(e) == ("AccessDenied", 403)
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert _code(e) == ("NoSuchLifecycleConfiguration", 404)


def test_malformed_xml_is_refused_and_changes_nothing(cluster, bucket):
    s3 = cluster.client()
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [_rule("a", 5)]})
    for body in (b"<LifecycleConfiguration><Rule><Status>Enabled</Status>",           # not XML
                 b"<LifecycleConfiguration><Rule><ID>x</ID><Filter/>"                 # no Status
                 b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>"):
        s = sign("PUT", f"{cluster.endpoint}/{bucket}?lifecycle", payload=hashlib.sha256(body).hexdigest())
        status, _, answer = send(s, body)
        assert status == 400 and b"<Code>MalformedXML</Code>" in answer, answer
    assert [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]] == ["a"]


def test_background_pass_expires_objects_and_aborts_uploads(lc_cluster):
    c = lc_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="lcb")
    s3.put_bucket_lifecycle_configuration(Bucket="lcb", LifecycleConfiguration={"Rules": [
        _rule("tmp", 3, "tmp/"),
        {"ID": "scratch", "Status": "Enabled", "Filter": {"Tag": {"Key": "scratch", "Value": "yes"}},
         "Expiration": {"Days": 3}},
        {"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": "up/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}},
    ]})
    put = s3.put_object(Bucket="lcb", Key="tmp/a", Body=b"short-lived")
    m = re.fullmatch(r'expiry-date="([^"]+)", rule-id="tmp"', put["Expiration"])
    assert m, put.get("Expiration")
    expiry = calendar.timegm(time.strptime(m.group(1), "%a, %d %b %Y %H:%M:%S GMT"))
    assert time.time() + 2 <= expiry <= time.time() + 5   # 3 "days" of a second, rounded up
    assert s3.head_object(Bucket="lcb", Key="tmp/a")["Expiration"] == put["Expiration"]
    assert s3.get_object(Bucket="lcb", Key="tmp/a")["Expiration"] == put["Expiration"]
    s3.put_object(Bucket="lcb", Key="keep/b", Body=b"stays")
    s3.put_object(Bucket="lcb", Key="keep/tagged", Body=b"goes", Tagging="scratch=yes")
    assert "Expiration" not in s3.head_object(Bucket="lcb", Key="keep/b")
    before = c.archive_files()
    uid = s3.create_multipart_upload(Bucket="lcb", Key="up/x")["UploadId"]
    s3.upload_part(Bucket="lcb", Key="up/x", UploadId=uid, PartNumber=1, Body=payload(MiB, 1))
    part_files = c.archive_files() - before
    assert part_files
    kept_upload = s3.create_multipart_upload(Bucket="lcb", Key="other/y")["UploadId"]

    assert _wait(lambda: not _exists(s3, "lcb", "tmp/a") and not _exists(s3, "lcb", "keep/tagged"))
    assert _wait(lambda: [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="lcb").get("Uploads", [])]
                 == [kept_upload])
    assert _wait(lambda: not (c.archive_files() & part_files)), "the aborted upload's parts were not reclaimed"
    assert s3.get_object(Bucket="lcb", Key="keep/b")["Body"].read() == b"stays"
    with urllib.request.urlopen(c.endpoint + "/_pocket/metrics") as r:
        metrics = r.read().decode()
    assert re.search(r'pocket_lifecycle_objects_expired_total\{kind="current"\} 2\.0', metrics), metrics
    assert "pocket_lifecycle_uploads_aborted_total 1.0" in metrics

    s3.put_object(Bucket="lcb", Key="tmp/a", Body=b"again")   # a new object starts its own clock
    assert s3.get_object(Bucket="lcb", Key="tmp/a")["Body"].read() == b"again"


def _lifecycle_cli(c, *args):
    return forkserver.run(["lifecycle", "--config", c.config, *args], timeout=120)


def test_one_shot_dry_run_then_run_with_gateway_stopped_and_rebuild_keeps_rules(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), sections={"lifecycle": {"interval": 0, "day_seconds": 1}}).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="one")
        rules = [_rule("tmp", 1, "tmp/")]
        s3.put_bucket_lifecycle_configuration(Bucket="one", LifecycleConfiguration={"Rules": rules})
        s3.put_object(Bucket="one", Key="tmp/a", Body=b"old")
        s3.put_object(Bucket="one", Key="keep", Body=b"kept")
        # a "day" is 1 s, rounded up to a "midnight": due within ~2.5 s; interval 0: no background pass
        report = wait_for("tmp/a to be due", lambda: (r := pocket(c, "lifecycle", "--dry-run", "--json")[1])
                          ["objects_expired"] and r, timeout=20, every=0.2)
        assert report["objects_expired"] == 1 and [a["key"] for a in report["actions"]] == ["tmp/a"]
        assert _exists(s3, "one", "tmp/a")   # a dry run changes nothing

        c.stop("gateway")
        out = _lifecycle_cli(c)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Expired 1 objects" in out.stdout
        c.start_gateway()
        s3 = c.client()
        assert not _exists(s3, "one", "tmp/a")
        assert s3.get_object(Bucket="one", Key="keep")["Body"].read() == b"kept"

        c.stop("gateway")
        shutil.rmtree(f"{c.root}/index")
        pocket(c, "index", "rebuild")   # exits 0, else fails with its output
        c.start_gateway()
        s3 = c.client()
        assert s3.get_bucket_lifecycle_configuration(Bucket="one")["Rules"] == \
            [{"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}]
        assert not _exists(s3, "one", "tmp/a")   # the lifecycle delete's tombstone holds
    finally:
        c.close()


def test_gateway_killed_mid_pass_loses_nothing_and_the_next_pass_finishes(tmp_path):
    """Paced at 4 deletes a second, a pass over 24 expired objects takes ~6 s; kill -9 the
    gateway in the middle. What should stay stays; the restarted gateway's pass finishes."""
    c = ProcCluster(str(tmp_path / "cluster"),
                    sections={"lifecycle": {"interval": 0.5, "day_seconds": 1, "rate": 4}}).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="crash")
        s3.put_bucket_lifecycle_configuration(Bucket="crash", LifecycleConfiguration={"Rules": [_rule("t", 2, "tmp/")]})
        kept = {f"keep/{i}": payload(1000 + i, i) for i in range(6)}
        for i in range(24):
            s3.put_object(Bucket="crash", Key=f"tmp/{i:02d}", Body=b"x" * 100)
        for key, body in kept.items():
            s3.put_object(Bucket="crash", Key=key, Body=body)

        def left():
            return len(s3.list_objects_v2(Bucket="crash", Prefix="tmp/").get("Contents", []))
        assert _wait(lambda: 0 < left() < 20, timeout=30)
        c.signal("gateway")   # SIGKILL mid-pass
        c.start_gateway()
        s3 = c.client()
        assert _wait(lambda: left() == 0, timeout=30)
        for key, body in kept.items():
            assert s3.get_object(Bucket="crash", Key=key)["Body"].read() == body
    finally:
        c.close()


def test_put_copy_and_complete_answer_x_amz_expiration(cluster, bucket):
    s3 = cluster.client()
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [_rule("month", 30, "m/")]})
    put = s3.put_object(Bucket=bucket, Key="m/a", Body=b"a")
    m = re.fullmatch(r'expiry-date="([^"]+)", rule-id="month"', put["Expiration"])
    expiry = calendar.timegm(time.strptime(m.group(1), "%a, %d %b %Y %H:%M:%S GMT"))
    assert expiry % 86400 == 0 and 30 * 86400 <= expiry - time.time() <= 31 * 86400   # a midnight UTC
    copied = s3.copy_object(Bucket=bucket, Key="m/b", CopySource={"Bucket": bucket, "Key": "m/a"})
    assert re.fullmatch(r'expiry-date="[^"]+ 00:00:00 GMT", rule-id="month"', copied["Expiration"])
    uid = s3.create_multipart_upload(Bucket=bucket, Key="m/c")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="m/c", UploadId=uid, PartNumber=1, Body=b"c")["ETag"]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="m/c", UploadId=uid,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done["Expiration"].endswith('rule-id="month"')
    assert "Expiration" not in s3.put_object(Bucket=bucket, Key="other", Body=b"o")


def test_pass_with_too_few_disks_stops_changes_nothing_and_resumes_when_they_return(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), sections={"lifecycle": {"interval": 0.5, "day_seconds": 1}}).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="down")
        s3.put_bucket_lifecycle_configuration(Bucket="down", LifecycleConfiguration={"Rules": [_rule("t", 4, "tmp/")]})
        # The objects are due 4 s after their PUT: the PUTs and the stops must fit in that (on
        # a loaded machine, one after the other they did not, and a pass expired some first).
        with ThreadPoolExecutor(5) as pool:
            list(pool.map(lambda i: s3.put_object(Bucket="down", Key=f"tmp/{i:02d}", Body=payload(300 << 10, i)),
                          range(15)))
        s3.put_object(Bucket="down", Key="keep", Body=b"kept")
        stopped = c.node_ids[:4]
        c.stop_all(stopped)   # no write quorum anywhere: no tombstone can be written
        assert _wait(lambda: "lifecycle pass stopped" in c.log("gateway"), timeout=30), c.log("gateway")[-3000:]
        assert len(s3.list_objects_v2(Bucket="down", Prefix="tmp/")["Contents"]) == 15
        for node in stopped:
            c.start_node(node)
        assert _wait(lambda: "Contents" not in s3.list_objects_v2(Bucket="down", Prefix="tmp/"), timeout=40)
        assert s3.get_object(Bucket="down", Key="keep")["Body"].read() == b"kept"
    finally:
        c.close()
