"""Object Lock against real processes with boto3: a bucket created with Object Lock,
default retention, GOVERNANCE (bypass only with the header) and COMPLIANCE retention,
legal hold, the refusals S3 makes; then what is locked survives everything Pocket does
on its own: a lifecycle pass that would expire it, a repair of its fragments, a drain of
one of its disks and an index rebuild from the disks alone.

A lifecycle "day" is one second here (lifecycle.day_seconds)."""
import base64
import datetime as dt
import hashlib
import io
import random
import time

import pytest
from botocore.exceptions import ClientError

from .archives import archive_parts, flip_payload_byte
from .harness import ACCESS_KEY, QUIET, SECRET_KEY, ProcCluster, pocket
from .signing import send, sign

DAY = 1


def _body(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _error(call) -> tuple[int, str]:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=seconds)


def _versions(s3, bucket: str, key: str) -> list[str]:
    page = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key]


@pytest.fixture(scope="module")
def lc(tmp_path_factory):
    c = ProcCluster(str(tmp_path_factory.mktemp("lock")), sections={**QUIET, "lifecycle": {"day_seconds": DAY}})
    c.start()
    yield c
    c.close()


def test_locked_bucket_default_retention_bypass_and_compliance(lc):
    s3 = lc.client()
    s3.create_bucket(Bucket="vault", ObjectLockEnabledForBucket=True)
    assert s3.get_bucket_versioning(Bucket="vault")["Status"] == "Enabled"
    assert _error(lambda: s3.put_bucket_versioning(
        Bucket="vault", VersioningConfiguration={"Status": "Suspended"})) == (409, "InvalidBucketState")
    assert s3.get_bucket_versioning(Bucket="vault")["Status"] == "Enabled"
    conf = s3.get_object_lock_configuration(Bucket="vault")["ObjectLockConfiguration"]
    assert conf == {"ObjectLockEnabled": "Enabled"}
    s3.put_object_lock_configuration(Bucket="vault", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    assert s3.get_object_lock_configuration(Bucket="vault")["ObjectLockConfiguration"]["Rule"] == {
        "DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}

    # default retention: GOVERNANCE for a day; deleting the version needs the bypass header
    data = _body(300_000, 1)
    vid = s3.put_object(Bucket="vault", Key="gov", Body=data)["VersionId"]
    head = s3.head_object(Bucket="vault", Key="gov")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    left = (head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 86400 - 120 < left <= 86400
    assert s3.get_object_retention(Bucket="vault", Key="gov")["Retention"]["Mode"] == "GOVERNANCE"
    assert _error(lambda: s3.delete_object(Bucket="vault", Key="gov", VersionId=vid)) == (403, "AccessDenied")
    shorter = _in(3600)
    assert _error(lambda: s3.put_object_retention(Bucket="vault", Key="gov", VersionId=vid, Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": shorter})) == (403, "AccessDenied")
    marker = s3.delete_object(Bucket="vault", Key="gov")   # a plain DELETE only adds a delete marker
    assert marker["DeleteMarker"]
    assert s3.get_object(Bucket="vault", Key="gov", VersionId=vid)["Body"].read() == data
    s3.put_object_retention(Bucket="vault", Key="gov", VersionId=vid, BypassGovernanceRetention=True,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": shorter})
    assert s3.get_object_retention(Bucket="vault", Key="gov", VersionId=vid)["Retention"][
        "RetainUntilDate"] == shorter
    s3.delete_object(Bucket="vault", Key="gov", VersionId=vid, BypassGovernanceRetention=True)
    assert vid not in _versions(s3, "vault", "gov")

    # COMPLIANCE: no bypass, never shortened nor weakened; extending is allowed
    until = _in(7200)
    cvid = s3.put_object(Bucket="vault", Key="comp", Body=_body(5000, 2), ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=until)["VersionId"]
    assert s3.head_object(Bucket="vault", Key="comp")["ObjectLockRetainUntilDate"] == until
    assert _error(lambda: s3.delete_object(Bucket="vault", Key="comp", VersionId=cvid,
                                           BypassGovernanceRetention=True)) == (403, "AccessDenied")
    for mode, when in (("COMPLIANCE", _in(60)), ("GOVERNANCE", _in(9000))):
        assert _error(lambda: s3.put_object_retention(
            Bucket="vault", Key="comp", VersionId=cvid, BypassGovernanceRetention=True,
            Retention={"Mode": mode, "RetainUntilDate": when})) == (403, "AccessDenied")
    assert s3.get_object_retention(Bucket="vault", Key="comp")["Retention"] == {
        "Mode": "COMPLIANCE", "RetainUntilDate": until}
    later = _in(9000)
    s3.put_object_retention(Bucket="vault", Key="comp", Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    assert s3.head_object(Bucket="vault", Key="comp")["ObjectLockRetainUntilDate"] == later

    # DeleteObjects reports each key: the locked one refused, the other deleted
    free = s3.put_object(Bucket="vault", Key="free", Body=b"x", ObjectLockMode="GOVERNANCE",
                         ObjectLockRetainUntilDate=_in(60))["VersionId"]
    s3.put_object_retention(Bucket="vault", Key="free", VersionId=free, BypassGovernanceRetention=True,
                            Retention={})
    out = s3.delete_objects(Bucket="vault", Delete={"Objects": [{"Key": "comp", "VersionId": cvid},
                                                                {"Key": "free", "VersionId": free}]})
    assert [(e["Key"], e["Code"]) for e in out.get("Errors", [])] == [("comp", "AccessDenied")]
    assert [d["Key"] for d in out["Deleted"]] == ["free"]
    assert _versions(s3, "vault", "comp") == [cvid]
    assert _error(lambda: s3.delete_bucket(Bucket="vault")) == (409, "BucketNotEmpty")


def test_legal_hold_blocks_deletion_whatever_the_retention(lc):
    s3 = lc.client()
    s3.create_bucket(Bucket="held", ObjectLockEnabledForBucket=True)
    vid = s3.put_object(Bucket="held", Key="k", Body=_body(1000, 3), ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.head_object(Bucket="held", Key="k")["ObjectLockLegalHoldStatus"] == "ON"
    assert _error(lambda: s3.delete_object(Bucket="held", Key="k", VersionId=vid,
                                           BypassGovernanceRetention=True)) == (403, "AccessDenied")
    assert _error(lambda: s3.get_object_retention(Bucket="held", Key="k")) == (404, "NoSuchObjectLockConfiguration")
    s3.put_object_legal_hold(Bucket="held", Key="k", VersionId=vid, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket="held", Key="k")["LegalHold"]["Status"] == "OFF"
    s3.delete_object(Bucket="held", Key="k", VersionId=vid)
    assert _versions(s3, "held", "k") == []


def test_refusals_change_nothing(lc):
    s3 = lc.client()
    s3.create_bucket(Bucket="plain")
    assert _error(lambda: s3.get_object_lock_configuration(Bucket="plain")) == (
        404, "ObjectLockConfigurationNotFoundError")
    assert _error(lambda: s3.put_object_lock_configuration(Bucket="plain", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled"})) == (409, "InvalidBucketState")
    assert _error(lambda: s3.put_object(Bucket="plain", Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                                        ObjectLockRetainUntilDate=_in(60))) == (400, "InvalidRequest")
    assert _error(lambda: s3.head_object(Bucket="plain", Key="k")) == (404, "404")
    s3.put_object(Bucket="plain", Key="k", Body=b"x")
    assert _error(lambda: s3.put_object_legal_hold(Bucket="plain", Key="k", LegalHold={"Status": "ON"})) == (
        400, "InvalidRequest")
    assert "ObjectLockLegalHoldStatus" not in s3.head_object(Bucket="plain", Key="k")

    s3.create_bucket(Bucket="vault2", ObjectLockEnabledForBucket=True)
    assert _error(lambda: s3.put_object(Bucket="vault2", Key="k", Body=b"x", ObjectLockMode="FOREVER",
                                        ObjectLockRetainUntilDate=_in(60))) == (400, "InvalidArgument")
    assert _error(lambda: s3.put_object(Bucket="vault2", Key="k", Body=b"x", ObjectLockMode="COMPLIANCE",
                                        ObjectLockRetainUntilDate=_in(-60))) == (400, "InvalidArgument")
    assert _error(lambda: s3.put_object_lock_configuration(Bucket="vault2", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 0}}})) == (
        400, "InvalidArgument")
    # a negative period is an integer, refused like 0 (Pocket said MalformedXML); a retention body's
    # mode outside the schema's enumeration is MalformedXML (Pocket said InvalidArgument), as s3-tests expects
    assert _error(lambda: s3.put_object_lock_configuration(Bucket="vault2", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": -1}}})) == (
        400, "InvalidArgument")
    s3.put_object(Bucket="vault2", Key="held", Body=b"x")
    assert _error(lambda: s3.put_object_retention(Bucket="vault2", Key="held", Retention={
        "Mode": "governance", "RetainUntilDate": _in(60)})) == (400, "MalformedXML")
    assert "ObjectLockMode" not in s3.head_object(Bucket="vault2", Key="held")
    assert _versions(s3, "vault2", "k") == []
    assert s3.get_object_lock_configuration(Bucket="vault2")["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"}
    # S3 wants Content-MD5 or a checksum on a PUT with lock parameters (boto3 sends one unless told not to)
    bare = lc.client(retries=1, request_checksum_calculation="when_required")
    assert _error(lambda: bare.put_object(Bucket="vault2", Key="k", Body=b"x", ObjectLockMode="COMPLIANCE",
                                          ObjectLockRetainUntilDate=_in(60))) == (400, "InvalidRequest")
    assert _versions(s3, "vault2", "k") == []


@pytest.mark.parametrize("query,body", [
    ("object-lock", b"<ObjectLockConfiguration><ObjectLockEnabled>Disabled</ObjectLockEnabled></ObjectLockConfiguration>"),
    ("object-lock", b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
                    b"<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years></DefaultRetention></Rule>"
                    b"</ObjectLockConfiguration>"),
    ("object-lock", b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
                    b"<Mode>GOVERNANCE</Mode><Days>99999999999999999999</Days></DefaultRetention></Rule>"
                    b"</ObjectLockConfiguration>"),
    ("object-lock", b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
                    b"<Mode>GOVERNANCE</Mode><Days>\xd9\xa3</Days></DefaultRetention></Rule></ObjectLockConfiguration>"),
    ("object-lock", b"<Retention/>"),
    ("retention", b"<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>9999-12-31T23:59:59-05:00</RetainUntilDate>"
                  b"</Retention>"),
    ("retention", b"<Retention><Mode>COMPLIANCE</Mode></Retention>"),
    ("retention", b"<Retention><Mode>SOMETIMES</Mode><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate>"
                  b"</Retention>"),
    ("retention", b"<Retention><Mode>COMPLIANCE"),
    ("legal-hold", b"<LegalHold><Status>MAYBE</Status></LegalHold>"),
    ("legal-hold", b""),
])
def test_hostile_bodies_get_a_4xx_and_change_nothing(lc, query, body):
    s3 = lc.client()
    if "hostile" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="hostile", ObjectLockEnabledForBucket=True)
        s3.put_object(Bucket="hostile", Key="k", Body=b"x")
    before = (s3.get_object_lock_configuration(Bucket="hostile")["ObjectLockConfiguration"],
              s3.head_object(Bucket="hostile", Key="k"))
    path = "/hostile" if query == "object-lock" else "/hostile/k"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    status, _, answer = send(sign("PUT", f"{lc.endpoint}{path}?{query}", {"Content-MD5": md5}), body)
    assert 400 <= status < 500, (status, answer)
    after = (s3.get_object_lock_configuration(Bucket="hostile")["ObjectLockConfiguration"],
             s3.head_object(Bucket="hostile", Key="k"))
    assert [before[0], {k: v for k, v in before[1].items() if k != "ResponseMetadata"}] == \
        [after[0], {k: v for k, v in after[1].items() if k != "ResponseMetadata"}]


def _archives_of(c, version_id: str) -> list[str]:
    return sorted(ref for ref in c.archive_files() if archive_parts(ref)[1].partition(".")[0] == version_id)


def _still_locked(s3, key: str, vid: str, data: bytes, retention: dict, hold: str | None) -> None:
    assert s3.get_object(Bucket="keep", Key=key, VersionId=vid)["Body"].read() == data, key
    assert s3.get_object_retention(Bucket="keep", Key=key, VersionId=vid)["Retention"] == retention, key
    if hold:
        assert s3.get_object_legal_hold(Bucket="keep", Key=key, VersionId=vid)["LegalHold"]["Status"] == hold
    assert _error(lambda: s3.delete_object(Bucket="keep", Key=key, VersionId=vid,
                                           BypassGovernanceRetention=True)) == (403, "AccessDenied"), key
    assert vid in _versions(s3, "keep", key)


def test_lock_survives_lifecycle_repair_drain_and_index_rebuild(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), nodes=7,
                    sections={**QUIET, "lifecycle": {"day_seconds": DAY, "interval": 3600}})
    c.start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="keep", ObjectLockEnabledForBucket=True)
        big, held, free = _body(3 * (1 << 20) + 5, 10), _body(600_000, 11), _body(700_000, 12)
        comp = {"Mode": "COMPLIANCE", "RetainUntilDate": _in(7200)}
        big_vid = s3.put_object(Bucket="keep", Key="big", Body=big, ObjectLockMode="COMPLIANCE",
                                ObjectLockRetainUntilDate=comp["RetainUntilDate"])["VersionId"]
        held_vid = s3.put_object(Bucket="keep", Key="held", Body=held, ObjectLockMode="GOVERNANCE",
                                 ObjectLockRetainUntilDate=_in(600))["VersionId"]
        # later changes are amendment records on the disks, not in the manifest
        gov = {"Mode": "GOVERNANCE", "RetainUntilDate": _in(9000)}
        s3.put_object_retention(Bucket="keep", Key="held", VersionId=held_vid, Retention=gov)
        s3.put_object_legal_hold(Bucket="keep", Key="held", VersionId=held_vid, LegalHold={"Status": "ON"})
        free_vid = s3.put_object(Bucket="keep", Key="free", Body=free)["VersionId"]
        for key in ("big", "held", "free"):
            s3.delete_object(Bucket="keep", Key=key)     # delete markers: the versions become noncurrent

        # a lifecycle rule that would expire every noncurrent version: only the unlocked one goes
        s3.put_bucket_lifecycle_configuration(Bucket="keep", LifecycleConfiguration={"Rules": [
            {"ID": "all", "Status": "Enabled", "Filter": {"Prefix": ""},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
        deadline = time.monotonic() + 60
        while True:
            _, report = pocket(c, "lifecycle", "--json")
            if report["versions_expired"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)     # the next lifecycle "day" has not come yet
        assert report["versions_expired"] == 1 and report["locked_skipped"] == 2, report
        assert free_vid not in _versions(s3, "keep", "free")
        _still_locked(s3, "big", big_vid, big, comp, None)
        _still_locked(s3, "held", held_vid, held, gov, "ON")

        # a fragment of the locked object rots; scrub finds it, repair rebuilds it byte for byte
        victim = _archives_of(c, big_vid)[0]
        with open(victim, "rb") as f:
            original = f.read()
        flip_payload_byte(victim, random.Random(5))
        _, found = pocket(c, "scrub", "--json", ok=(1,))
        assert {(r["disk"], r["archive"]) for r in found["corrupt"]} == {archive_parts(victim)}
        _, fixed = pocket(c, "repair", "--json")
        assert fixed["fragments"] == 1 and fixed["failed"] == []
        with open(victim, "rb") as f:
            assert f.read() == original

        # one of the held object's disks is drained: its fragment moves to the spare disk
        disk = archive_parts(_archives_of(c, held_vid)[0])[0]
        _, out = pocket(c, "disk", "drain", disk, "--json")
        assert out["ok"] and not out["moves"]["failed"]
        assert all(archive_parts(ref)[0] != disk for ref in c.archive_files())

        # and the index is rebuilt from the disks alone
        c.stop("gateway")
        pocket(c, "index", "rebuild", "--json")
        c.start_gateway()
        assert s3.get_object_lock_configuration(Bucket="keep")["ObjectLockConfiguration"] == {
            "ObjectLockEnabled": "Enabled"}
        assert _error(lambda: s3.put_bucket_versioning(
            Bucket="keep", VersioningConfiguration={"Status": "Suspended"})) == (409, "InvalidBucketState")
        _still_locked(s3, "big", big_vid, big, comp, None)
        _still_locked(s3, "held", held_vid, held, gov, "ON")
        assert free_vid not in _versions(s3, "keep", "free")
    finally:
        c.close()


def test_minio_sdk_sees_the_same_locks(lc):
    import minio  # a second client: minio-py sends Content-MD5 on the lock calls, as S3 wants
    from minio.commonconfig import COMPLIANCE, GOVERNANCE
    from minio.objectlockconfig import DAYS, ObjectLockConfig
    from minio.retention import Retention

    mc = minio.Minio(f"127.0.0.1:{lc.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False,
                     region="us-east-1")
    mc.make_bucket("mc-vault", object_lock=True)
    mc.set_object_lock_config("mc-vault", ObjectLockConfig(GOVERNANCE, 2, DAYS))
    config = mc.get_object_lock_config("mc-vault")
    assert (config.mode, config.duration, config.duration_unit) == (GOVERNANCE, 2, DAYS)
    data = _body(400_000, 20)
    # minio-py's plain PUT carries neither Content-MD5 nor a checksum: refused as S3 refuses
    # it under a default retention (kopia#711); boto3 sends a CRC32
    with pytest.raises(minio.error.S3Error) as e:
        mc.put_object("mc-vault", "k", io.BytesIO(data), len(data))
    assert e.value.code == "InvalidRequest"
    s3 = lc.client()
    put = type("Put", (), {"version_id": s3.put_object(Bucket="mc-vault", Key="k", Body=data)["VersionId"]})
    assert mc.get_object("mc-vault", "k", version_id=put.version_id).read() == data
    retention = mc.get_object_retention("mc-vault", "k", version_id=put.version_id)
    assert retention.mode == GOVERNANCE
    left = (retention.retain_until_date - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 2 * 86400 - 120 < left <= 2 * 86400
    mc.set_object_retention("mc-vault", "k", Retention(COMPLIANCE, _in(3 * 86400)), version_id=put.version_id)
    mc.enable_object_legal_hold("mc-vault", "k", version_id=put.version_id)
    assert mc.is_object_legal_hold_enabled("mc-vault", "k", version_id=put.version_id)
    with pytest.raises(minio.error.S3Error) as e:
        mc.remove_object("mc-vault", "k", version_id=put.version_id)
    assert e.value.code == "AccessDenied"
    # and boto3 reads what minio-py set
    head = s3.head_object(Bucket="mc-vault", Key="k", VersionId=put.version_id)
    assert (head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == ("COMPLIANCE", "ON")


def test_multipart_and_copy_take_their_lock_like_a_put(lc):
    s3 = lc.client()
    s3.create_bucket(Bucket="mp-vault", ObjectLockEnabledForBucket=True)
    until = _in(5000)
    up = s3.create_multipart_upload(Bucket="mp-vault", Key="mp", ObjectLockMode="COMPLIANCE",
                                    ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="ON")["UploadId"]
    parts = [_body(5 << 20, 30), _body(1000, 31)]
    etags = [s3.upload_part(Bucket="mp-vault", Key="mp", UploadId=up, PartNumber=n, Body=p)["ETag"]
             for n, p in enumerate(parts, 1)]
    vid = s3.complete_multipart_upload(Bucket="mp-vault", Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})["VersionId"]
    head = s3.head_object(Bucket="mp-vault", Key="mp")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"], head["ObjectLockLegalHoldStatus"]) == (
        "COMPLIANCE", until, "ON")
    assert _error(lambda: s3.delete_object(Bucket="mp-vault", Key="mp", VersionId=vid)) == (403, "AccessDenied")
    # a copy gets the bucket's default retention, never the source's lock
    s3.put_object_lock_configuration(Bucket="mp-vault", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": 1}}})
    copy = s3.copy_object(Bucket="mp-vault", Key="copy", CopySource={"Bucket": "mp-vault", "Key": "mp"})
    head = s3.head_object(Bucket="mp-vault", Key="copy")
    assert head["ObjectLockMode"] == "GOVERNANCE" and "ObjectLockLegalHoldStatus" not in head
    assert (head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.timezone.utc)).days in (364, 365)
    s3.delete_object(Bucket="mp-vault", Key="copy", VersionId=copy["VersionId"], BypassGovernanceRetention=True)
    assert s3.get_object(Bucket="mp-vault", Key="mp")["Body"].read() == b"".join(parts)
