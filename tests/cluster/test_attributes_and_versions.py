"""GetObjectAttributes and ListObjectVersions (of unversioned buckets), through boto3."""
import pytest
from botocore.exceptions import ClientError

from .conftest import payload
from .harness import OTHER_ACCESS_KEY, OTHER_SECRET_KEY
from .signing import send, sign


def _code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def test_attributes_of_a_single_part_object(cluster, bucket):
    s3 = cluster.client()
    put = s3.put_object(Bucket=bucket, Key="one", Body=b"hello attributes", ChecksumAlgorithm="SHA256")
    got = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=ALL)
    assert got["ETag"] == put["ETag"].strip('"')
    assert got["Checksum"]["ChecksumSHA256"] == put["ChecksumSHA256"]
    assert (got["StorageClass"], got["ObjectSize"]) == ("STANDARD", 16)
    assert "ObjectParts" not in got
    assert got["LastModified"]
    only = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=["ObjectSize"])
    assert "ETag" not in only and only["ObjectSize"] == 16


def test_attributes_of_a_multipart_object(cluster, bucket):
    s3 = cluster.client()
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    sizes = {1: 5 << 20, 2: 5 << 20, 4: 1234}
    etags = {n: s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n,
                               Body=payload(size))["ETag"] for n, size in sizes.items()}
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in etags.items()]})
    got = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL)
    assert got["ETag"] == done["ETag"].strip('"') and got["ObjectSize"] == sum(sizes.values())
    parts = got["ObjectParts"]
    assert parts["TotalPartsCount"] == 3 and parts["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == list(sizes.items())
    page = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2)
    assert [p["PartNumber"] for p in page["ObjectParts"]["Parts"]] == [1, 2]
    assert page["ObjectParts"]["IsTruncated"] is True and page["ObjectParts"]["NextPartNumberMarker"] == 2
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                    PartNumberMarker=2)
    assert [p["PartNumber"] for p in rest["ObjectParts"]["Parts"]] == [4]


def test_attribute_errors(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert _code(e) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Colour"])
    assert _code(e) == ("InvalidArgument", 400)
    status, _, body = send(sign("GET", f"{cluster.endpoint}/{bucket}/k?attributes"))
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    other = cluster.client(retries=1, user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    with pytest.raises(ClientError) as e:
        other.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag"])
    assert _code(e) == ("AccessDenied", 403)


def test_list_object_versions_of_an_unversioned_bucket(cluster, bucket):
    s3 = cluster.client()
    keys = ["a", "b/1", "b/2", "c", "d/x/y", "e"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    got = s3.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in got["Versions"]] == [
        (k, "null", True, len(k)) for k in keys]
    assert got["IsTruncated"] is False and "DeleteMarkers" not in got
    head = s3.head_object(Bucket=bucket, Key="a")
    assert got["Versions"][0]["ETag"] == head["ETag"]
    # delimiter and prefix
    top = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [v["Key"] for v in top["Versions"]] == ["a", "c", "e"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["b/", "d/"]
    assert [v["Key"] for v in s3.list_object_versions(Bucket=bucket, Prefix="b/")["Versions"]] == ["b/1", "b/2"]
    # pagination, by hand and with boto3's paginator
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=2, Delimiter="/")
    assert page["IsTruncated"] and (page["NextKeyMarker"], page["NextVersionIdMarker"]) == ("b/", "null")
    nxt = s3.list_object_versions(Bucket=bucket, MaxKeys=2, Delimiter="/", KeyMarker="b/",
                                  VersionIdMarker="null")
    assert [v["Key"] for v in nxt["Versions"]] == ["c"] and [p["Prefix"] for p in nxt["CommonPrefixes"]] == ["d/"]
    seen = [v["Key"] for p in s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}) for v in p.get("Versions", [])]
    assert seen == keys
    # versionId=null reads the one version
    assert s3.get_object(Bucket=bucket, Key="c", VersionId="null")["Body"].read() == b"c"


def test_list_object_versions_empty_markers_are_absent(cluster, bucket):
    """KeyMarker='' with VersionIdMarker='' is a first page (s3-tests' cleanup pages that way);
    Pocket refused it as a version-id marker without a key marker."""
    s3 = cluster.client()
    for key in ("m1", "m2"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    page = s3.list_object_versions(Bucket=bucket, KeyMarker="", VersionIdMarker="", MaxKeys=1)
    assert [v["Key"] for v in page["Versions"]] == ["m1"] and page["IsTruncated"]
    rest = s3.list_object_versions(Bucket=bucket, KeyMarker=page["NextKeyMarker"],
                                   VersionIdMarker=page["NextVersionIdMarker"])
    assert [v["Key"] for v in rest["Versions"]] == ["m2"]


def test_list_object_versions_errors(cluster, bucket):
    s3 = cluster.client()
    for params in ({"VersionIdMarker": "null"}, {"KeyMarker": "a", "VersionIdMarker": "v123"},
                   {"MaxKeys": -1}):
        with pytest.raises(ClientError) as e:
            s3.list_object_versions(Bucket=bucket, **params)
        assert _code(e) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as e:
        s3.list_object_versions(Bucket=f"{bucket}-none")
    assert _code(e) == ("NoSuchBucket", 404)
    other = cluster.client(retries=1, user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    with pytest.raises(ClientError) as e:
        other.list_object_versions(Bucket=bucket)
    assert _code(e) == ("AccessDenied", 403)
