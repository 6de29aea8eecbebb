"""Lifecycle in versioned buckets against real processes: NoncurrentVersionExpiration
(NoncurrentDays, NewerNoncurrentVersions), expired delete markers, and current-version
Expiration making a delete marker (Enabled) or a null one (Suspended).

A lifecycle "day" is two seconds here (lifecycle.day_seconds), long enough to see that
nothing goes before its time."""
import time

import pytest

from .harness import ProcCluster, metric, pocket, wait_for
from .test_lifecycle import _wait

DAY = 2


@pytest.fixture(scope="module")
def vc(tmp_path_factory):
    c = ProcCluster(str(tmp_path_factory.mktemp("lcv")),
                    sections={"lifecycle": {"interval": 0.5, "day_seconds": DAY}}).start()
    yield c
    c.close()


def _versioned(s3, bucket, rules, status="Enabled"):
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})


def _versions(s3, bucket, prefix=""):
    """[(key, version id, is delete marker, is latest)] newest first per key."""
    page = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    rows = [(v["Key"], v["VersionId"], False, v["IsLatest"], v["LastModified"]) for v in page.get("Versions", [])]
    rows += [(m["Key"], m["VersionId"], True, m["IsLatest"], m["LastModified"]) for m in page.get("DeleteMarkers", [])]
    return sorted(((k, vid, dm, latest) for k, vid, dm, latest, _ in rows), key=lambda r: (r[0], not r[3]))


def _noncurrent_rule(rule_id, prefix, days, newer=None):
    nc = {"NoncurrentDays": days, **({"NewerNoncurrentVersions": newer} if newer else {})}
    return {"ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": prefix}, "NoncurrentVersionExpiration": nc}


def _metric(c, kind) -> float:
    return metric(c.endpoint, "pocket_lifecycle_objects_expired_total", f'kind="{kind}"')


def test_noncurrent_versions_expire_after_their_days_and_the_newest_are_kept(vc):
    s3 = vc.client()
    _versioned(s3, "ncv", [_noncurrent_rule("all", "a/", 2), _noncurrent_rule("keep1", "b/", 2, newer=1)])
    started = time.time()
    ids = {}
    for key in ("a/x", "b/y"):
        ids[key] = [s3.put_object(Bucket="ncv", Key=key, Body=f"{key} {i}".encode())["VersionId"] for i in range(4)]
    s3.put_object(Bucket="ncv", Key="other", Body=b"no rule")
    s3.put_object(Bucket="ncv", Key="other", Body=b"no rule again")
    before = _metric(vc, "noncurrent")

    # a version goes 2 days after it became noncurrent, rounded up to a "midnight": never before started + 4 s
    time.sleep(max(0.0, started + 2 * DAY - 0.8 - time.time()))
    assert len(_versions(s3, "ncv", "a/")) == 4 and len(_versions(s3, "ncv", "b/")) == 4, "expired early"

    def settled():
        return [v[1] for v in _versions(s3, "ncv", "a/")] == ids["a/x"][-1:] and \
            [v[1] for v in _versions(s3, "ncv", "b/")] == ids["b/y"][:1:-1]
    assert _wait(settled, timeout=30), (_versions(s3, "ncv"), ids)
    # the current versions stay and read back; NewerNoncurrentVersions=1 kept b/y's newest noncurrent one
    assert s3.get_object(Bucket="ncv", Key="a/x")["Body"].read() == b"a/x 3"
    assert s3.get_object(Bucket="ncv", Key="b/y")["Body"].read() == b"b/y 3"
    assert s3.get_object(Bucket="ncv", Key="b/y", VersionId=ids["b/y"][2])["Body"].read() == b"b/y 2"
    assert len(_versions(s3, "ncv", "other")) == 2   # no rule selects it
    assert _wait(lambda: _metric(vc, "noncurrent") - before == 5)


def test_expiration_in_a_versioned_bucket_adds_a_delete_marker_and_lone_markers_go(vc):
    s3 = vc.client()
    _versioned(s3, "exp", [
        {"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 2}},
        {"ID": "dm", "Status": "Enabled", "Filter": {"Prefix": "gone/"},
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ])
    started = time.time()
    old = s3.put_object(Bucket="exp", Key="tmp/a", Body=b"old data")["VersionId"]
    # a key whose only version is deleted for good: its delete marker is left alone, so the rule takes it
    lone = s3.put_object(Bucket="exp", Key="gone/k", Body=b"x")["VersionId"]
    marker = s3.delete_object(Bucket="exp", Key="gone/k")["VersionId"]
    s3.delete_object(Bucket="exp", Key="gone/k", VersionId=lone)
    assert _versions(s3, "exp", "gone/") == [("gone/k", marker, True, True)]
    before_dm, before_current = _metric(vc, "delete_marker"), _metric(vc, "current")
    assert _wait(lambda: _versions(s3, "exp", "gone/") == [], timeout=15)

    time.sleep(max(0.0, started + 2 * DAY - 0.8 - time.time()))
    assert s3.get_object(Bucket="exp", Key="tmp/a")["Body"].read() == b"old data", "expired early"
    assert _wait(lambda: len(_versions(s3, "exp", "tmp/")) == 2, timeout=30)
    rows = _versions(s3, "exp", "tmp/")
    assert rows[0][2:] == (True, True) and rows[1] == ("tmp/a", old, False, False), rows
    assert "Contents" not in s3.list_objects_v2(Bucket="exp", Prefix="tmp/")
    assert s3.get_object(Bucket="exp", Key="tmp/a", VersionId=old)["Body"].read() == b"old data"
    # the marker is not alone (the old version is behind it): later passes leave both, also
    # once the marker itself is days old
    time.sleep(3 * DAY)   # the test is about time: the marker is now past the rule's 2 days
    passes = metric(vc.endpoint, "pocket_lifecycle_passes_total")
    wait_for("two more lifecycle passes", lambda: metric(vc.endpoint, "pocket_lifecycle_passes_total") >= passes + 2,
             timeout=30, every=0.2)
    assert len(_versions(s3, "exp", "tmp/")) == 2
    assert _metric(vc, "delete_marker") - before_dm == 1 and _metric(vc, "current") - before_current == 1


def test_expiration_in_a_suspended_bucket_replaces_the_null_version_with_a_null_marker(vc):
    s3 = vc.client()
    _versioned(s3, "susp", [{"ID": "t", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}])
    kept = s3.put_object(Bucket="susp", Key="k", Body=b"versioned")["VersionId"]
    s3.put_bucket_versioning(Bucket="susp", VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket="susp", Key="k", Body=b"null one").get("VersionId", "null") == "null"
    assert _wait(lambda: _versions(s3, "susp")[:1] == [("k", "null", True, True)])
    assert _versions(s3, "susp") == [("k", "null", True, True), ("k", kept, False, False)]
    assert s3.get_object(Bucket="susp", Key="k", VersionId=kept)["Body"].read() == b"versioned"


def test_one_shot_dry_run_lists_version_actions_and_the_run_does_them(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), sections={"lifecycle": {"interval": 0, "day_seconds": 1}}).start()
    try:
        s3 = c.client()
        _versioned(s3, "ver", [_noncurrent_rule("ncv", "", 1),
                             {"ID": "dm", "Status": "Enabled", "Filter": {"Prefix": "d/"},
                              "Expiration": {"ExpiredObjectDeleteMarker": True}}])
        first = s3.put_object(Bucket="ver", Key="k", Body=b"1")["VersionId"]
        s3.put_object(Bucket="ver", Key="k", Body=b"2")
        marker = s3.delete_object(Bucket="ver", Key="d/x")["VersionId"]   # a marker with nothing behind it
        # a day (1 s) after they became noncurrent, rounded up to a "midnight": within ~2.5 s
        report = wait_for("the noncurrent version and the lone marker to be due",
                          lambda: (r := pocket(c, "lifecycle", "--dry-run", "--json")[1])["versions_expired"] == 2
                          and r, timeout=20, every=0.2)
        assert sorted((a["action"], a["key"], a["version_id"], a["delete_marker"]) for a in report["actions"]) == \
            [("expire-version", "d/x", marker, True), ("expire-version", "k", first, False)]
        assert len(_versions(s3, "ver")) == 3   # a dry run changes nothing

        _, out = pocket(c, "lifecycle")
        assert "2 versions" in out and f"version {first} of ver/k" in out, out
        assert [v[1] for v in _versions(s3, "ver")] == [s3.head_object(Bucket="ver", Key="k")["VersionId"]]
        assert s3.get_object(Bucket="ver", Key="k")["Body"].read() == b"2"
    finally:
        c.close()
