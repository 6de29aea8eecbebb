"""Versions and delete markers are durable: index rebuild, a disk that was down, scrub and repair."""
import os
import shutil
import signal
import time

import pytest
from botocore.exceptions import ClientError

from storage.objects.ids import id_time

from .archives import archive_parts
from .conftest import payload
from .harness import pocket, wait_for
from .test_versioning import _enable, _versions

SEG = 1 << 20


def _snapshot(s3, bucket):
    """Everything a user can see of a bucket's versions: the listing and every version's bytes and tags."""
    rows = _versions(s3, bucket)
    data = {}
    for key, vid, _latest, kind in rows:
        if kind == "V":
            got = s3.get_object(Bucket=bucket, Key=key, VersionId=vid)
            tags = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=vid)["TagSet"]
            data[(key, vid)] = (got["Body"].read(), got["ContentType"], tags)
    current = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    return rows, data, current, s3.get_bucket_versioning(Bucket=bucket).get("Status")


def _rebuild(c):
    c.stop("gateway")
    shutil.rmtree(f"{c.root}/index")
    code, report = pocket(c, "index", "rebuild", "--json")
    c.start_gateway()
    return report


def test_versions_markers_and_permanent_deletes_survive_an_index_rebuild(fresh_cluster):
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="ver")
    s3.put_object(Bucket="ver", Key="k", Body=b"written before versioning")
    s3.put_object(Bucket="ver", Key="old", Body=b"its null version is deleted for good")
    _enable(s3, "ver")
    s3.delete_object(Bucket="ver", Key="old", VersionId="null")
    s3.put_object(Bucket="ver", Key="k", Body=payload(SEG + 7), ContentType="type/one")
    s3.put_object(Bucket="ver", Key="k", Body=b"second")
    s3.delete_object(Bucket="ver", Key="k")                        # latest is a marker
    g1 = s3.put_object(Bucket="ver", Key="gone", Body=b"g1")["VersionId"]
    g2 = s3.put_object(Bucket="ver", Key="gone", Body=payload(3 * SEG))["VersionId"]
    s3.put_object(Bucket="ver", Key="back", Body=b"b1")
    marker = s3.delete_object(Bucket="ver", Key="back")["VersionId"]
    s3.delete_object(Bucket="ver", Key="back", VersionId=marker)   # the object came back
    t1 = s3.put_object(Bucket="ver", Key="tagged", Body=b"t1", Tagging="a=1")["VersionId"]
    s3.put_object(Bucket="ver", Key="tagged", Body=b"t2")
    s3.put_object_tagging(Bucket="ver", Key="tagged", VersionId=t1, Tagging={"TagSet": [{"Key": "b", "Value": "2"}]})
    # a permanent delete while a node is down: its disk keeps g2's fragment and misses the record
    c.signal(c.node_ids[0], signal.SIGKILL)
    s3.delete_object(Bucket="ver", Key="gone", VersionId=g2)
    c.start_node(c.node_ids[0])
    s3.create_bucket(Bucket="sus")
    s3.put_object(Bucket="sus", Key="k", Body=b"legacy")
    _enable(s3, "sus")
    s3.put_object(Bucket="sus", Key="k", Body=b"versioned")
    _enable(s3, "sus", "Suspended")
    s3.put_object(Bucket="sus", Key="k", Body=b"null one")
    s3.put_object(Bucket="sus", Key="k", Body=b"null two")
    s3.put_object(Bucket="sus", Key="m", Body=b"m")
    s3.delete_object(Bucket="sus", Key="m")                         # a null delete marker
    before = {b: _snapshot(s3, b) for b in ("ver", "sus")}
    assert [r[1] for r in before["ver"][0] if r[0] == "gone"] == [g1]
    assert not [r for r in before["ver"][0] if r[0] == "old"]
    assert [r[:2] for r in before["sus"][0]][:2] == [("k", "null"), ("k", before["sus"][0][1][1])]

    report = _rebuild(c)
    assert report["versions"] == sum(len(b[0]) for b in before.values())
    s3 = c.client()
    for bucket, snap in before.items():
        assert _snapshot(s3, bucket) == snap, bucket
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ver", Key="gone", VersionId=g2)
    assert e.value.response["Error"]["Code"] == "NoSuchVersion"


def test_scrub_keeps_and_repair_restores_noncurrent_versions(quiet_cluster):  # noqa: F811
    c = quiet_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="noncur")
    _enable(s3, "noncur")
    old_data = payload(3 * SEG + 5)
    old = s3.put_object(Bucket="noncur", Key="k", Body=old_data)["VersionId"]
    s3.put_object(Bucket="noncur", Key="k", Body=b"current")
    s3.put_object(Bucket="noncur", Key="d", Body=b"deleted")
    s3.delete_object(Bucket="noncur", Key="d")
    _, status = pocket(c, "status", "--json")
    assert (status["objects"], status["noncurrent_versions"], status["delete_markers"]) == (1, 2, 1)
    victim = next(ref for ref in sorted(c.archive_files()) if archive_parts(ref)[1].startswith(old + "."))
    os.unlink(victim)
    newest = max(id_time(archive_parts(ref)[1].split(".")[0]) for ref in c.archive_files())
    wait_for("every archive to be past the cluster's 5 s orphan grace", lambda: time.time() - newest > 5.05,
             timeout=30, every=0.05)
    before = set(c.archive_files())
    _, report = pocket(c, "scrub", "--json", ok=(1,))
    assert report["orphans_removed"] == [] and report["orphans_kept"] == []
    assert [r["archive"] for r in report["missing"]] == [archive_parts(victim)[1]]
    assert set(c.archive_files()) == before
    _, fixed = pocket(c, "repair", "--json")
    assert fixed["fragments"] == 1 and os.path.exists(victim)
    assert s3.get_object(Bucket="noncur", Key="k", VersionId=old)["Body"].read() == old_data
    # a version deleted for good is garbage: its archives go, the others stay
    s3.delete_object(Bucket="noncur", Key="k", VersionId=old)
    assert not any(archive_parts(ref)[1].startswith(old + ".") for ref in c.archive_files())
    _, status = pocket(c, "status", "--json")
    assert (status["objects"], status["noncurrent_versions"], status["delete_markers"]) == (1, 1, 1)
