"""The smaller S3 behaviours conformance runs check: bucket tagging, bucket location,
bucket logging, expected bucket owner, conditional CompleteMultipartUpload, part digests, metadata text."""
import base64
import email.header
import hashlib
import random
import shutil
import zlib

import pytest
from botocore.exceptions import ClientError

from .harness import OTHER_ACCESS_KEY, OTHER_SECRET_KEY, pocket
from .signing import send, sign


def body(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_bucket_tagging_put_get_delete(cluster, bucket):
    s3 = cluster.client()
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert _code(e) == ("NoSuchTagSet", 404)
    tags = [{"Key": f"k{i}", "Value": f"v\u00e9{i}"} for i in range(12)]   # more than an object may have
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    for bad in ([{"Key": "aws:x", "Value": "1"}], [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}],
                [{"Key": f"k{i}", "Value": ""} for i in range(51)]):
        with pytest.raises(ClientError) as e:
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": bad})
        assert _code(e) == ("InvalidTag", 400)
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags   # refusals changed nothing
    other = cluster.client(user=("nobody", "x"))
    with pytest.raises(ClientError) as e:
        other.get_bucket_tagging(Bucket=bucket)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert _code(e) == ("NoSuchTagSet", 404)


def test_bucket_location_of_the_default_region_is_empty(cluster, bucket):
    assert cluster.client().get_bucket_location(Bucket=bucket)["LocationConstraint"] is None


def test_bucket_logging_reads_as_off_and_cannot_be_turned_on(cluster, bucket):
    """Pocket delivers no server access logs: GetBucketLogging says so as S3 says it of a
    bucket without logging, turning it off is accepted, turning it on is checked and refused."""
    s3 = cluster.client()
    other = cluster.client(retries=1, user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)
    s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})

    def turn_on(client, target, prefix="logs/"):
        with pytest.raises(ClientError) as e:
            client.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={
                "LoggingEnabled": {"TargetBucket": target, "TargetPrefix": prefix}})
        return _code(e)
    assert turn_on(s3, bucket) == ("NotImplemented", 501)
    assert turn_on(s3, f"{bucket}-nowhere") == ("InvalidTargetBucketForLogging", 400)
    theirs = f"{bucket}-theirs"
    other.create_bucket(Bucket=theirs)
    assert turn_on(s3, theirs) == ("InvalidTargetBucketForLogging", 400)
    assert turn_on(other, bucket) == ("AccessDenied", 403)   # the bucket's owner only, as on S3
    with pytest.raises(ClientError) as e:
        other.get_bucket_logging(Bucket=bucket)
    assert _code(e) == ("AccessDenied", 403)
    for bad in (b"<BucketLoggingStatus><LoggingEnabled><TargetPrefix>p</TargetPrefix></LoggingEnabled>"
                b"</BucketLoggingStatus>", b"<Logging/>", b"<BucketLoggingStatus><Nope/></BucketLoggingStatus>"):
        status, _, answer = send(sign("PUT", f"{cluster.endpoint}/{bucket}?logging",
                                      payload=hashlib.sha256(bad).hexdigest()), bad)
        assert (status, b"<Code>MalformedXML</Code>" in answer) == (400, True)
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)


def test_bucket_tags_survive_index_rebuild(fresh_cluster):
    s3 = fresh_cluster.client()
    s3.create_bucket(Bucket="tagged")
    tags = [{"Key": "cost-centre", "Value": "42"}, {"Key": "team", "Value": "ops"}]
    s3.put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": tags})
    fresh_cluster.stop("gateway")
    shutil.rmtree(f"{fresh_cluster.root}/index")
    pocket(fresh_cluster, "index", "rebuild")
    fresh_cluster.start_gateway()
    assert fresh_cluster.client().get_bucket_tagging(Bucket="tagged")["TagSet"] == tags


def test_expected_bucket_owner(cluster, bucket):
    s3 = cluster.client()
    owner = s3.list_buckets()["Owner"]["ID"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"v", ExpectedBucketOwner=owner)
    assert s3.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner=owner)["Body"].read() == b"v"
    for call in (lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"x", ExpectedBucketOwner="111122223333"),
                 lambda: s3.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner="111122223333"),
                 lambda: s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner="111122223333"),
                 lambda: s3.copy_object(Bucket=bucket, Key="k3", CopySource={"Bucket": bucket, "Key": "k"},
                                        ExpectedSourceBucketOwner="111122223333")):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    s3.copy_object(Bucket=bucket, Key="k3", CopySource={"Bucket": bucket, "Key": "k"},
                   ExpectedSourceBucketOwner=owner, ExpectedBucketOwner=owner)
    assert s3.get_object(Bucket=bucket, Key="k3")["Body"].read() == b"v"


def test_conditional_complete_multipart_upload(cluster, bucket):
    s3 = cluster.client()
    first = body(5 << 20, 20)

    def upload(key, data):
        uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=data)["ETag"]
        return uid, {"Parts": [{"PartNumber": 1, "ETag": etag}]}

    uid, parts = upload("k", first)
    with pytest.raises(ClientError) as e:   # If-Match on a key that does not exist yet
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload=parts, IfMatch='"abc"')
    assert _code(e) == ("NoSuchKey", 404)
    done = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload=parts, IfNoneMatch="*")
    second = body(1000, 21)
    uid, parts = upload("k", second)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload=parts, IfNoneMatch="*")
    assert _code(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload=parts,
                                     IfMatch='"0123456789abcdef0123456789abcdef-1"')
    assert _code(e) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == first   # refusals changed nothing
    # the upload is still open after a refusal: the right condition completes it
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload=parts, IfMatch=done["ETag"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == second


def test_wrong_sha256_on_a_part_is_bad_digest(cluster, bucket):
    s3 = cluster.client()
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")["UploadId"]
    assert uid
    for bad in ("ZGVhZGJlZWY=",   # base64, but 8 bytes: no SHA-256
                base64.b64encode(hashlib.sha256(b"other").digest()).decode()):
        with pytest.raises(ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=body(1024, 22),
                           ChecksumAlgorithm="SHA256", ChecksumSHA256=bad)
        assert _code(e) == ("BadDigest", 400)
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="p", Body=b"x", ChecksumSHA256="ZGVhZGJlZWY=")
    assert _code(e) == ("BadDigest", 400)


def test_multipart_checksum_type_is_returned(cluster, bucket):
    s3 = cluster.client()
    created = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32",
                                         ChecksumType="FULL_OBJECT")
    assert created["ChecksumType"] == "FULL_OBJECT"
    data = body(1000, 23)
    etag = s3.upload_part(Bucket=bucket, Key="k", UploadId=created["UploadId"], PartNumber=1, Body=data,
                          ChecksumAlgorithm="CRC32")["ETag"]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=created["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert head["ChecksumCRC32"] == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_non_ascii_metadata_is_returned_rfc2047_encoded(cluster, bucket):
    """S3 decodes RFC 2047 encoded words in x-amz-meta-* before storing and returns any
    non-ASCII value encoded again (=?UTF-8?B?...?=); ASCII comes back as sent."""
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="k", Body=b"v", Metadata={
        "plain": "just ascii =? text", "accented": "=?UTF-8?Q?caf=C3=A9?=", "word": "=?UTF-8?B?w6lsw6hvbg==?="})
    want = {"plain": "just ascii =? text", "accented": "=?UTF-8?B?Y2Fmw6k=?=", "word": "=?UTF-8?B?w6lsw6hvbg==?="}
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == want
    assert s3.get_object(Bucket=bucket, Key="k")["Metadata"] == want
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"})
    assert s3.head_object(Bucket=bucket, Key="copy")["Metadata"] == want
    decoded = [email.header.decode_header(want["accented"])[0]]
    assert decoded[0][0].decode(decoded[0][1]) == "caf\u00e9"
