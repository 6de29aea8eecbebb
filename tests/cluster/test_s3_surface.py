"""The S3 surface of the core: auth, errors and listing, as boto3 and the AWS CLI see them."""
import hashlib
import base64
import os
import subprocess
import sys
import urllib.request

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from .conftest import payload
from .harness import ACCESS_KEY, SECRET_KEY


# The AWS CLI installed beside this Python (the test venv), else the one on PATH.
AWS = next((p for p in (os.path.join(os.path.dirname(sys.executable), "aws"),) if os.path.exists(p)), "aws")


def _code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_bad_signature_is_refused(cluster, bucket):
    bad = boto3.client("s3", endpoint_url=cluster.endpoint, aws_access_key_id=ACCESS_KEY,
                       aws_secret_access_key="wrong-secret", region_name="us-east-1")
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket=bucket, Key="x", Body=b"1")
    assert _code(e) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError):
        cluster.client().head_object(Bucket=bucket, Key="x")


def test_unknown_key_is_refused(cluster):
    bad = boto3.client("s3", endpoint_url=cluster.endpoint, aws_access_key_id="NOSUCHKEY",
                       aws_secret_access_key="x", region_name="us-east-1")
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert _code(e) == ("InvalidAccessKeyId", 403)


def test_anonymous_is_refused_with_request_id(cluster, bucket):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{cluster.endpoint}/{bucket}/x")
    assert e.value.code == 403
    assert e.value.headers["x-amz-request-id"]
    body = e.value.read().decode()
    assert "<Code>AccessDenied</Code>" in body and "<RequestId>" in body


def test_unsigned_payload_and_signed_payload_both_work(cluster, bucket):
    unsigned = boto3.client("s3", endpoint_url=cluster.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=BotoConfig(s3={"payload_signing_enabled": False}))
    unsigned.put_object(Bucket=bucket, Key="u", Body=b"unsigned body")
    assert cluster.client().get_object(Bucket=bucket, Key="u")["Body"].read() == b"unsigned body"


def test_wrong_content_md5_stores_nothing(cluster, bucket):
    s3 = cluster.client()
    before = cluster.archive_files()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="md5", Body=b"hello",
                      ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode())
    assert _code(e) == ("BadDigest", 400)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="md5")
    assert cluster.archive_files() == before
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="md5", Body=b"hello", ContentMD5="not-base64!")
    assert _code(e) == ("InvalidDigest", 400)
    s3.put_object(Bucket=bucket, Key="md5", Body=b"hello",
                  ContentMD5=base64.b64encode(hashlib.md5(b"hello").digest()).decode())


def test_bucket_errors(cluster, bucket):
    s3 = cluster.client()
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket="Bad_Name")
    assert _code(e) == ("InvalidBucketName", 400)
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=bucket)
    assert _code(e) == ("BucketAlreadyOwnedByYou", 409)
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="no-such-bucket-here")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="no-such-bucket-here", Key="k", Body=b"x")
    assert _code(e) == ("NoSuchBucket", 404)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert _code(e) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_bucket_location(Bucket="no-such-bucket-here" if False else _new_bucket(s3))["LocationConstraint"] is None


def _new_bucket(s3):
    s3.create_bucket(Bucket="location-check")
    return "location-check"


def test_key_and_metadata_limits(cluster, bucket):
    s3 = cluster.client()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert _code(e) == ("KeyTooLongError", 400)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata={"big": "v" * 3000})
    assert _code(e) == ("MetadataTooLarge", 400)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_listing_prefix_delimiter_pagination(cluster, bucket):
    s3 = cluster.client()
    keys = [f"photos/2024/{i:03d}.jpg" for i in range(7)] + [f"photos/2025/{i}.jpg" for i in range(3)] + \
           ["photos/index.html", "readme.txt", "zeta/a", "zeta/b"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["photos/", "zeta/"]
    assert [o["Key"] for o in top["Contents"]] == ["readme.txt"]
    sub = s3.list_objects_v2(Bucket=bucket, Prefix="photos/", Delimiter="/")
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]
    assert [o["Key"] for o in sub["Contents"]] == ["photos/index.html"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3})
    seen = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert seen == sorted(keys)
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="photos/index.html")
    assert [o["Key"] for o in after["Contents"]] == ["readme.txt", "zeta/a", "zeta/b"]
    v1 = s3.list_objects(Bucket=bucket, Prefix="zeta/", MaxKeys=1)
    assert [o["Key"] for o in v1["Contents"]] == ["zeta/a"] and v1["IsTruncated"]
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=-1)
    assert _code(e)[1] == 400


def test_an_empty_delimiter_is_no_delimiter(cluster, bucket):
    """`delimiter=` groups nothing and S3 leaves it out of the answer (V1, V2 and versions);
    Pocket echoed <Delimiter></Delimiter>, which s3-tests' delimiter_empty tests refuse."""
    s3 = cluster.client()
    for key in ("dir/a", "dir/b", "top"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    for listing in (s3.list_objects, s3.list_objects_v2, s3.list_object_versions):
        page = listing(Bucket=bucket, Delimiter="")
        assert "Delimiter" not in page and "CommonPrefixes" not in page, listing
        assert [o["Key"] for o in page.get("Contents", page.get("Versions"))] == ["dir/a", "dir/b", "top"]
    v1 = s3.list_objects(Bucket=bucket, Delimiter="", MaxKeys=1)
    assert v1["IsTruncated"] and "NextMarker" not in v1
    assert s3.list_objects(Bucket=bucket, Delimiter="/")["Delimiter"] == "/"


def test_health_ready_metrics(cluster):
    for path in ("/_pocket/health", "/_pocket/ready"):
        with urllib.request.urlopen(cluster.endpoint + path) as r:
            assert r.status == 200
    with urllib.request.urlopen(cluster.endpoint + "/_pocket/metrics") as r:
        text = r.read().decode()
    assert "pocket_s3_requests_total" in text and 'pocket_disk_up{disk="n1d1"} 1.0' in text


def test_unimplemented_is_501_not_500(cluster, bucket):
    s3 = cluster.client()
    with pytest.raises(ClientError) as e:
        s3.get_bucket_website(Bucket=bucket)
    assert _code(e) == ("NotImplemented", 501)


def test_aws_cli_roundtrip(cluster, bucket, tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "no-config")}
    # Default CLI settings: 20 MiB is above the 8 MB multipart threshold, so this is a multipart upload.
    src = tmp_path / "src.bin"
    data = payload(20 * 1024 * 1024 + 3)
    src.write_bytes(data)

    def aws(*args, ok=(0,)):
        out = subprocess.run([AWS, "--endpoint-url", cluster.endpoint, *args], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode in ok, out.stderr
        return out.stdout
    aws("s3", "cp", str(src), f"s3://{bucket}/cli/src.bin")
    assert "src.bin" in aws("s3", "ls", f"s3://{bucket}/cli/")
    aws("s3", "cp", f"s3://{bucket}/cli/src.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    assert '"ContentLength": 20971523' in aws("s3api", "head-object", "--bucket", bucket, "--key", "cli/src.bin")
    aws("s3", "rm", f"s3://{bucket}/cli/src.bin")
    assert aws("s3", "ls", f"s3://{bucket}/cli/", ok=(1,)) == ""  # the CLI exits 1 when nothing matches


def test_users_own_their_buckets(cluster, bucket):
    """Another access key can neither see nor touch this user's bucket, nor take its name."""
    from .harness import OTHER_ACCESS_KEY, OTHER_SECRET_KEY
    s3, other = cluster.client(), cluster.client(retries=1, user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    s3.put_object(Bucket=bucket, Key="private", Body=b"mine")
    assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]
    for call in (lambda: other.get_object(Bucket=bucket, Key="private"),
                 lambda: other.put_object(Bucket=bucket, Key="intruder", Body=b"x"),
                 lambda: other.delete_object(Bucket=bucket, Key="private"),
                 lambda: other.list_objects_v2(Bucket=bucket)):
        with pytest.raises(ClientError) as e:
            call()
        assert _code(e) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        other.create_bucket(Bucket=bucket)
    assert _code(e) == ("BucketAlreadyExists", 409)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["private"]
    assert s3.get_object(Bucket=bucket, Key="private")["Body"].read() == b"mine"
    other.create_bucket(Bucket=f"{bucket}-other")
    assert f"{bucket}-other" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
