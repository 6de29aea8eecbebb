"""Objects of every shape go in through boto3 and come back byte for byte."""
import hashlib

import pytest
from botocore.exceptions import ClientError

from .conftest import payload

SEG = 1 << 20


@pytest.mark.parametrize("size", [0, 1, 4096, 128 * 1024, 128 * 1024 + 1, SEG - 1, SEG, SEG + 1,
                                  5 * SEG + 12345])
def test_put_get_roundtrip(cluster, bucket, size):
    s3 = cluster.client()
    data = payload(size)
    put = s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=data, ContentType="application/x-test",
                        Metadata={"color": "blue", "owner": "ops"})
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key=f"obj-{size}")
    assert got["Body"].read() == data
    assert got["ContentLength"] == size
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"color": "blue", "owner": "ops"}
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key=f"obj-{size}")
    assert head["ContentLength"] == size and head["ETag"] == put["ETag"]


def test_large_object_roundtrip(cluster, bucket):
    """A 100+ MiB object streams through in one PUT and comes back identical."""
    s3 = cluster.client()
    data = payload(101 * SEG + 777)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    got = s3.get_object(Bucket=bucket, Key="big")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("rng,expect", [
    ("bytes=0-0", (0, 1)), ("bytes=10-19", (10, 20)), ("bytes=1048570-1048590", (1048570, 1048591)),
    ("bytes=3000000-", (3000000, None)), ("bytes=-100", (-100, None)), ("bytes=5-999999999", (5, None)),
])
def test_range_get(cluster, bucket, rng, expect):
    s3 = cluster.client()
    data = payload(3 * SEG + 5)
    s3.put_object(Bucket=bucket, Key="ranged", Body=data)
    got = s3.get_object(Bucket=bucket, Key="ranged", Range=rng)
    body = got["Body"].read()
    lo, hi = expect
    assert body == (data[lo:hi] if hi is not None else data[lo:])
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"].endswith(f"/{len(data)}")


def test_unsatisfiable_range(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="small", Body=b"0123456789")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="small", Range="bytes=10-20")
    assert e.value.response["Error"]["Code"] == "InvalidRange"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_overwrite_returns_latest_and_frees_old_fragments(cluster, bucket):
    s3 = cluster.client()
    before = cluster.archive_files()
    s3.put_object(Bucket=bucket, Key="k", Body=payload(2 * SEG))
    s3.put_object(Bucket=bucket, Key="k", Body=b"second version")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second version"
    import time
    deadline = time.time() + 10
    while time.time() < deadline and len(cluster.archive_files() - before) != 3:
        time.sleep(0.1)
    assert len(cluster.archive_files() - before) == 3  # only the 3 replicas of the new small version


def test_delete(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="gone", Body=b"x" * 1000)
    s3.delete_object(Bucket=bucket, Key="gone")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="gone")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    s3.delete_object(Bucket=bucket, Key="never-existed")  # S3 answers 204 for absent keys too


def test_odd_keys(cluster, bucket):
    s3 = cluster.client()
    keys = ["a b", "plus+sign", "percent%20sign", "ünïcødé/日本語", "dir/sub/file.txt", "x" * 1024,
            "?question&amp=1", "emoji-\U0001F600"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    for k in keys:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())
