"""S3 bucket versioning through boto3 against a real gateway: versions, delete markers, errors."""
import xml.etree.ElementTree as ET
from urllib.parse import unquote

import pytest
from botocore.exceptions import ClientError

from .conftest import payload
from .signing import send, sign


def _err(excinfo):
    r = excinfo.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


def _headers(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPHeaders"]


def _versions(s3, bucket, **kw):
    """[(key, version id, is latest, "V" or "D")] in the order the XML lists them: boto3 splits
    Version and DeleteMarker entries apart, S3 interleaves them (key order, newest first)."""
    raw = []
    handler = lambda http_response, **_: raw.append(http_response.content)  # noqa: E731
    s3.meta.events.register("after-call.s3.ListObjectVersions", handler)
    try:
        s3.list_object_versions(Bucket=bucket, **kw)
    finally:
        s3.meta.events.unregister("after-call.s3.ListObjectVersions", handler)
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    rows = []
    for el in ET.fromstring(raw[-1]):
        tag = el.tag.replace(ns, "")
        if tag in ("Version", "DeleteMarker"):
            rows.append((unquote(el.findtext(f"{ns}Key")), el.findtext(f"{ns}VersionId"),  # boto3 sends encoding-type=url
                         el.findtext(f"{ns}IsLatest") == "true", tag[0]))
    return rows


def _enable(s3, bucket, status="Enabled"):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def test_versioning_configuration(cluster, bucket):
    s3 = cluster.client()
    got = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in got
    status, _, body = send(sign("GET", f"{cluster.endpoint}/{bucket}?versioning"))
    assert status == 200 and b"<Status>" not in body and b"VersioningConfiguration" in body
    for bad in (b"<VersioningConfiguration><Status>On</Status></VersioningConfiguration>", b"<nope",
                b"<Other><Status>Enabled</Status></Other>"):
        status, _, body = send(sign("PUT", f"{cluster.endpoint}/{bucket}?versioning"), bad)
        assert status == 400 and b"<Code>MalformedXML</Code>" in body
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"},
                                 MFA="serial 123456")
    assert _err(e) == ("NotImplemented", 501)
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)  # nothing changed
    _enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    _enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    with pytest.raises(ClientError) as e:
        s3.get_bucket_versioning(Bucket=f"{bucket}-none")
    assert _err(e) == ("NoSuchBucket", 404)


def test_never_versioned_bucket_has_no_version_headers(cluster, bucket):
    s3 = cluster.client()
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    assert "VersionId" not in put
    assert "VersionId" not in s3.get_object(Bucket=bucket, Key="k")
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert "VersionId" not in deleted and "DeleteMarker" not in deleted
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)


def test_versions_keep_their_data(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="k", Body=b"before versioning")
    _enable(s3, bucket)
    bodies = [payload(n) for n in (10, 70_000, (1 << 20) + 5)]
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=b)["VersionId"] for b in bodies]
    assert len(set(ids)) == 3 and "null" not in ids
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == bodies[-1] and got["VersionId"] == ids[-1]
    for vid, body in zip(ids, bodies):
        one = s3.get_object(Bucket=bucket, Key="k", VersionId=vid)
        assert one["Body"].read() == body and one["VersionId"] == vid
        assert s3.head_object(Bucket=bucket, Key="k", VersionId=vid)["ContentLength"] == len(body)
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"before versioning"
    assert _versions(s3, bucket) == [("k", vid, vid == ids[-1], "V") for vid in reversed(ids)] + [
        ("k", "null", False, "V")]
    ranged = s3.get_object(Bucket=bucket, Key="k", VersionId=ids[1], Range="bytes=5-9")
    assert ranged["Body"].read() == bodies[1][5:10]


def test_delete_markers_and_permanent_deletes(cluster, bucket):
    s3 = cluster.client()
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="doc", Body=b"v1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="doc", Body=b"v2")["VersionId"]
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    marker = s3.delete_object(Bucket=bucket, Key="doc")
    assert marker["DeleteMarker"] is True and marker["VersionId"] not in (v1, v2)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="doc")
    assert _err(e) == ("NoSuchKey", 404)
    assert _headers(e)["x-amz-delete-marker"] == "true"
    assert _headers(e)["x-amz-version-id"] == marker["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="doc")
    assert _err(e) == ("404", 404) and _headers(e)["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="doc", VersionId=marker["VersionId"])
    assert _err(e) == ("MethodNotAllowed", 405) and _headers(e)["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="doc", VersionId=marker["VersionId"])
    assert _err(e)[1] == 405
    # ListObjects hides the key; the old versions are still readable
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["other"]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == ["other"]
    assert s3.get_object(Bucket=bucket, Key="doc", VersionId=v1)["Body"].read() == b"v1"
    assert _versions(s3, bucket, Prefix="doc") == [("doc", marker["VersionId"], True, "D"), ("doc", v2, False, "V"),
                                                   ("doc", v1, False, "V")]
    # removing the marker brings the object back
    gone = s3.delete_object(Bucket=bucket, Key="doc", VersionId=marker["VersionId"])
    assert gone["DeleteMarker"] is True and gone["VersionId"] == marker["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"v2"
    # removing the latest version makes the previous one current
    files = cluster.archive_files()
    s3.delete_object(Bucket=bucket, Key="doc", VersionId=v2)
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"v1"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="doc", VersionId=v2)
    assert _err(e) == ("NoSuchVersion", 404)
    assert not any(v2 in f for f in cluster.archive_files())  # its archives are reclaimed
    assert any(v1 in f for f in files) and any(v1 in f for f in cluster.archive_files())
    assert _versions(s3, bucket, Prefix="doc") == [("doc", v1, True, "V")]


def test_version_id_errors_change_nothing(cluster, bucket):
    s3 = cluster.client()
    _enable(s3, bucket)
    vid = s3.put_object(Bucket=bucket, Key="k", Body=b"data")["VersionId"]
    absent = "0" * 16 + "1" * 16
    delete = lambda v: s3.delete_object(Bucket=bucket, Key="k", VersionId=v)  # noqa: E731
    for call in (lambda v: s3.get_object(Bucket=bucket, Key="k", VersionId=v), delete,
                 lambda v: s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v)):
        with pytest.raises(ClientError) as e:
            call("not-a-version")
        assert _err(e) == ("InvalidArgument", 400)
        assert b"Invalid version id specified" in e.value.response["Error"]["Message"].encode()
        if call is delete:  # S3: deleting a version that is not there succeeds (idempotent)
            out = call(absent)
            assert out["ResponseMetadata"]["HTTPStatusCode"] == 204 and out["VersionId"] == absent
            continue
        with pytest.raises(ClientError) as e:
            call(absent)
        assert _err(e) == ("NoSuchVersion", 404)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k", VersionId=absent)
    assert _err(e)[1] == 404
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/k?versionId=nope")
    assert _err(e) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k", "VersionId": absent})
    assert _err(e) == ("NoSuchVersion", 404)
    assert _versions(s3, bucket) == [("k", vid, True, "V")]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


def test_suspended_writes_replace_only_the_null_version(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="k", Body=b"legacy")
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["VersionId"]
    _enable(s3, bucket, "Suspended")
    files_before = cluster.archive_files()
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"null two")
    assert put["VersionId"] == "null"
    assert s3.get_object(Bucket=bucket, Key="k")["VersionId"] == "null"
    assert _versions(s3, bucket) == [("k", "null", True, "V"), ("k", v1, False, "V")]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"null two"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"v1"
    assert len(cluster.archive_files() - files_before) > 0  # the legacy data went, v1 stayed
    marker = s3.delete_object(Bucket=bucket, Key="k")
    assert marker["DeleteMarker"] is True and marker["VersionId"] == "null"
    assert _versions(s3, bucket) == [("k", "null", True, "D"), ("k", v1, False, "V")]
    s3.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v1"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Disabled"})
    assert _err(e) == ("MalformedXML", 400)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"


def test_copy_multipart_and_tagging_by_version(cluster, bucket):
    s3 = cluster.client()
    _enable(s3, bucket)
    old = s3.put_object(Bucket=bucket, Key="src", Body=b"old source", Tagging="a=1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"new source")
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": old})
    assert copied["CopySourceVersionId"] == old and copied["VersionId"] not in ("null", old)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"old source"
    # restoring an old version by copying it onto its own key
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src", "VersionId": old})
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"old source"
    # tagging one version leaves the others alone
    s3.put_object_tagging(Bucket=bucket, Key="src", VersionId=old, Tagging={"TagSet": [{"Key": "b", "Value": "2"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="src", VersionId=old)["TagSet"] == [{"Key": "b", "Value": "2"}]
    assert s3.get_object_tagging(Bucket=bucket, Key="src")["TagSet"] == [{"Key": "a", "Value": "1"}]
    s3.delete_object_tagging(Bucket=bucket, Key="src", VersionId=old)
    assert s3.get_object_tagging(Bucket=bucket, Key="src", VersionId=old)["TagSet"] == []
    attrs = s3.get_object_attributes(Bucket=bucket, Key="src", VersionId=old, ObjectAttributes=["ObjectSize"])
    assert attrs["ObjectSize"] == len(b"old source") and attrs["VersionId"] == old
    # multipart: Complete makes a version; UploadPartCopy reads an old version
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    p1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=payload(5 << 20))
    p2 = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src", "VersionId": old})
    assert p2["CopySourceVersionId"] == old
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert done["VersionId"] not in (None, "null")
    head = s3.head_object(Bucket=bucket, Key="mp", VersionId=done["VersionId"], PartNumber=2)
    assert head["ContentLength"] == len(b"old source") and head["VersionId"] == done["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read()[-10:] == b"old source"


def test_conditional_requests_apply_to_the_addressed_version(cluster, bucket):
    s3 = cluster.client()
    _enable(s3, bucket)
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    got = s3.get_object(Bucket=bucket, Key="k", VersionId=first["VersionId"], IfMatch=first["ETag"])
    assert got["Body"].read() == b"first"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", IfMatch=first["ETag"])
    assert _err(e) == ("PreconditionFailed", 412)


def test_delete_objects_with_versions(cluster, bucket):
    s3 = cluster.client()
    _enable(s3, bucket)
    a1 = s3.put_object(Bucket=bucket, Key="a", Body=b"a1")["VersionId"]
    a2 = s3.put_object(Bucket=bucket, Key="a", Body=b"a2")["VersionId"]
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a", "VersionId": a2}, {"Key": "b"}, {"Key": "c", "VersionId": "bad"}]})
    deleted = {d["Key"]: d for d in out["Deleted"]}
    assert deleted["a"]["VersionId"] == a2 and "DeleteMarker" not in deleted["a"]
    gone = "0" * 16 + "1" * 16  # a version that is not there is reported Deleted, as S3 does
    out2 = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": gone}]})
    assert out2["Deleted"] == [{"Key": "a", "VersionId": gone}] and "Errors" not in out2
    assert deleted["b"]["DeleteMarker"] is True and deleted["b"]["DeleteMarkerVersionId"]
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("c", "NoSuchVersion")]
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"a1"
    marker = deleted["b"]["DeleteMarkerVersionId"]
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b", "VersionId": marker}]})
    assert out["Deleted"][0]["DeleteMarker"] is True and out["Deleted"][0]["DeleteMarkerVersionId"] == marker
    assert s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"b"
    # the bucket is not empty while a version or a delete marker remains
    for key in ("a", "b"):
        s3.delete_object(Bucket=bucket, Key=key)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert _err(e) == ("BucketNotEmpty", 409)
    for key, vid, _latest, _kind in _versions(s3, bucket):
        s3.delete_object(Bucket=bucket, Key=key, VersionId=vid)
    assert a1 not in str(s3.list_object_versions(Bucket=bucket))
    s3.delete_bucket(Bucket=bucket)


def test_list_object_versions_paging_and_prefixes(cluster, bucket):
    s3 = cluster.client()
    _enable(s3, bucket)
    long_key = "L/" + "x" * 500
    expected = []
    for key in ["a", "b/1", "b/2", "c", long_key + "1", long_key + "2", "é"]:
        ids = [s3.put_object(Bucket=bucket, Key=key, Body=key.encode() + bytes([i]))["VersionId"] for i in range(3)]
        expected += [(key, vid, vid == ids[-1], "V") for vid in reversed(ids)]
    s3.delete_object(Bucket=bucket, Key="c")
    listed = _versions(s3, bucket)
    assert [r[0] for r in listed] == sorted([r[0] for r in listed], key=lambda k: k.encode())
    assert len(listed) == len(expected) + 1
    assert listed[listed.index(next(r for r in listed if r[0] == "c"))][2:] == (True, "D")
    seen = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}):
        seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    assert sorted(seen) == sorted((r[0], r[1]) for r in listed) and len(seen) == len(listed)
    top = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["L/", "b/"]
    assert {v["Key"] for v in top["Versions"]} == {"a", "c", "é"}
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert page["IsTruncated"] and (page["NextKeyMarker"], page["NextVersionIdMarker"]) == listed[1][:2]
    rest = s3.list_object_versions(Bucket=bucket, KeyMarker=page["NextKeyMarker"],
                                   VersionIdMarker=page["NextVersionIdMarker"], MaxKeys=1)
    assert [(v["Key"], v["VersionId"]) for v in rest["Versions"]] == [(r[0], r[1]) for r in listed[2:3]]
    url = s3.list_object_versions(Bucket=bucket, Prefix="é", EncodingType="url")
    assert url["Versions"][0]["Key"] in ("%C3%A9", "é")
