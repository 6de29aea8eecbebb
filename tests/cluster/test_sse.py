"""Server-side encryption through boto3: SSE-C, SSE-S3, SSE-KMS and bucket default
encryption, round trips of many sizes and ranges across segment boundaries, multipart,
copies between modes, a second and third client, and the refusals S3 makes. What stays
true on the disks is test_sse_disks.py.
"""
from __future__ import annotations

import base64
import hashlib
import os
import random
import subprocess
import sys

import pytest
import requests
from botocore.exceptions import ClientError

from .harness import ACCESS_KEY, SECRET_KEY, ProcCluster

SEG = 64 << 10
KMS_KEY = base64.b64encode(random.Random(99).randbytes(32)).decode()
ENCRYPTION = {"master_key": base64.b64encode(random.Random(98).randbytes(32)).decode(),
              "kms_keys": [f"app-key:{KMS_KEY}"], "allow_http_customer_keys": True}
SIZES = [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 17, (3 << 20) + 5]
KEY = random.Random(1).randbytes(32)
OTHER_KEY = random.Random(2).randbytes(32)


def body(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def ssec(key: bytes = KEY, copy: bool = False) -> dict:
    prefix = "CopySource" if copy else ""
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key}


def _cluster(root: str) -> ProcCluster:
    return ProcCluster(root, embedded=True, storage={"segment_size": SEG},
                       sections={"encryption": ENCRYPTION, "scrub": {"enabled": False},
                                 "repair": {"enabled": False}})


@pytest.fixture(scope="module")
def enc_cluster(tmp_path_factory):
    c = _cluster(str(tmp_path_factory.mktemp("sse"))).start()
    yield c
    c.close()


@pytest.fixture
def s3(enc_cluster):
    return enc_cluster.client()


@pytest.fixture
def bucket(s3):
    name = f"sse-{os.urandom(6).hex()}"
    s3.create_bucket(Bucket=name)
    return name


def _ranges(size: int) -> list[tuple[int, int]]:
    if size == 0:
        return []
    spots = [(0, 0), (size - 1, size - 1), (0, size - 1)]
    for edge in range(SEG, size, SEG):   # across every segment boundary there is
        spots.append((edge - 3, min(edge + 2, size - 1)))
    if size > 2 * SEG:
        spots.append((SEG - 1, 2 * SEG))
    return spots


def _check_reads(s3, bucket: str, key: str, data: bytes, **extra) -> None:
    got = s3.get_object(Bucket=bucket, Key=key, **extra)
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    for first, last in _ranges(len(data)):
        part = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}", **extra)
        assert part["Body"].read() == data[first:last + 1], (key, first, last)
        assert part["ContentRange"] == f"bytes {first}-{last}/{len(data)}"


def _code(e: pytest.ExceptionInfo) -> tuple[int, str]:
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]


@pytest.mark.parametrize("size", SIZES)
def test_sse_c_round_trip_and_ranges(s3, bucket, size):
    data = body(size, size)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, **ssec())
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(KEY).digest()).decode()
    assert put["ETag"].strip('"') != hashlib.md5(data).hexdigest()   # opaque, as on S3
    _check_reads(s3, bucket, "k", data, **ssec())
    head = s3.head_object(Bucket=bucket, Key="k", **ssec())
    assert head["ContentLength"] == size and head["SSECustomerAlgorithm"] == "AES256"
    assert head["ETag"] == put["ETag"]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Size"] for o in listed] == [size]


def test_sse_c_wrong_or_missing_key_is_refused(s3, bucket):
    data = body(SEG + 5, 3)
    s3.put_object(Bucket=bucket, Key="k", Body=data, **ssec())
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert _code(e) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", **ssec(OTHER_KEY))
    assert _code(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k", **ssec(OTHER_KEY))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert _code(e) == (400, "InvalidRequest")
    got = s3.get_object_attributes(   # (boto3 does not encode the key for this call: given as sent)
        Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"], SSECustomerAlgorithm="AES256",
        SSECustomerKey=base64.b64encode(KEY).decode(),
        SSECustomerKeyMD5=base64.b64encode(hashlib.md5(KEY).digest()).decode())
    assert got["ObjectSize"] == len(data)
    with pytest.raises(ClientError) as e:   # a key whose MD5 is not the one given
        s3.put_object(Bucket=bucket, Key="k2", Body=b"x", SSECustomerAlgorithm="AES256",
                      SSECustomerKey=base64.b64encode(KEY).decode(),
                      SSECustomerKeyMD5=base64.b64encode(hashlib.md5(OTHER_KEY).digest()).decode())
    assert _code(e) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:   # not 256 bits
        s3.put_object(Bucket=bucket, Key="k2", Body=b"x", **ssec(KEY[:16]))
    assert _code(e) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:   # SSE-C and SSE-S3 at once
        s3.put_object(Bucket=bucket, Key="k2", Body=b"x", ServerSideEncryption="AES256", **ssec())
    assert _code(e) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:   # an unencrypted object read with a key
        s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
        s3.get_object(Bucket=bucket, Key="plain", **ssec())
    assert _code(e) == (400, "InvalidRequest")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k", "plain"]
    _check_reads(s3, bucket, "k", data, **ssec())


@pytest.mark.parametrize("size", [0, SEG + 1, (3 << 20) + 5])
def test_sse_s3_round_trip(s3, bucket, size):
    data = body(size, 100 + size)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert put["ETag"].strip('"') == hashlib.md5(data).hexdigest()   # SSE-S3 keeps the MD5 ETag
    _check_reads(s3, bucket, "k", data)
    assert s3.head_object(Bucket=bucket, Key="k")["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize("size", [1, SEG, 2 * SEG + 9])
def test_sse_kms_round_trip(s3, bucket, size):
    data = body(size, 200 + size)
    context = base64.b64encode(b'{"app":"photos"}').decode()
    put = s3.put_object(Bucket=bucket, Key="named", Body=data, ServerSideEncryption="aws:kms",
                        SSEKMSKeyId="app-key", SSEKMSEncryptionContext=context)
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == "app-key"
    assert put["ETag"].strip('"') != hashlib.md5(data).hexdigest()
    _check_reads(s3, bucket, "named", data)
    head = s3.head_object(Bucket=bucket, Key="named")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == "app-key"
    s3.put_object(Bucket=bucket, Key="default", Body=data, ServerSideEncryption="aws:kms")
    _check_reads(s3, bucket, "default", data)


def test_sse_kms_refusals_change_nothing(s3, bucket):
    for extra in ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "no-such-key"},
                  {"ServerSideEncryption": "aws:kms", "SSEKMSEncryptionContext": "bm90IGpzb24="},
                  {"ServerSideEncryption": "DES"}):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="k", Body=b"data", **extra)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, extra
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_reads_naming_sse_s3_or_kms_are_refused(enc_cluster, bucket):
    """GET and HEAD with x-amz-server-side-encryption(-aws-kms-key-id) get 400 InvalidArgument,
    as S3 answers (s3-tests' test_sse_kms_read_declare); Pocket ignored the headers."""
    s3 = enc_cluster.client()
    s3.put_object(Bucket=bucket, Key="sealed", Body=b"kms body", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId="app-key")
    extra = {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": "app-key"}
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: params["headers"].update(extra))
    s3.meta.events.register("before-call.s3.HeadObject", lambda params, **_: params["headers"].update(extra))
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="sealed")
    assert _code(e) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="sealed")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    plain = enc_cluster.client()
    assert plain.get_object(Bucket=bucket, Key="sealed")["Body"].read() == b"kms body"


def test_post_object_seals_like_a_put(enc_cluster, bucket):
    """A POST form's x-amz-server-side-encryption* fields, or else the bucket's default
    encryption, seal the object as a PUT's headers would. Pocket stored every form upload in
    the clear, answering 204 to a form that named a customer key (s3-tests'
    test_encryption_sse_c_post_object_authenticated_request)."""
    s3 = enc_cluster.client()
    signer = enc_cluster.client(signature_version="s3v4")

    def post(key: str, fields: dict, data: bytes):
        conditions = [{name: value} for name, value in fields.items()]
        form = signer.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions)
        return requests.post(f"{enc_cluster.endpoint}/{bucket}", data=form["fields"],
                             files={"file": ("f.bin", data, "application/octet-stream")}, timeout=60)

    sse_c = {"x-amz-server-side-encryption-customer-algorithm": "AES256",
             "x-amz-server-side-encryption-customer-key": base64.b64encode(KEY).decode(),
             "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(KEY).digest()).decode()}
    resp = post("form-c", sse_c, body(SEG + 3, 61))
    assert resp.status_code == 204, resp.text
    assert resp.headers["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="form-c")
    assert _code(e) == (400, "InvalidRequest")
    assert s3.get_object(Bucket=bucket, Key="form-c", **ssec())["Body"].read() == body(SEG + 3, 61)
    resp = post("form-kms", {"x-amz-server-side-encryption": "aws:kms",
                             "x-amz-server-side-encryption-aws-kms-key-id": "app-key"}, b"kms form")
    assert resp.status_code == 204, resp.text
    head = s3.head_object(Bucket=bucket, Key="form-kms")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == "app-key"
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    assert post("form-default", {}, b"default form").status_code == 204
    assert s3.head_object(Bucket=bucket, Key="form-default")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="form-default")["Body"].read() == b"default form"


def test_bucket_default_encryption(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert _code(e) == (404, "ServerSideEncryptionConfigurationNotFoundError")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "app-key"}}]})
    s3.put_object(Bucket=bucket, Key="same", Body=b"same")
    with pytest.raises(ClientError) as e:   # the default is no change: a copy onto itself is still refused
        s3.copy_object(Bucket=bucket, Key="same", CopySource={"Bucket": bucket, "Key": "same"})
    assert _code(e) == (400, "InvalidRequest")
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "app-key"}
    data = body(2 * SEG + 1, 5)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data)
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == "app-key"
    _check_reads(s3, bucket, "k", data)
    own = s3.put_object(Bucket=bucket, Key="own", Body=data, **ssec())   # a request's own choice wins
    assert "ServerSideEncryption" not in own and own["SSECustomerAlgorithm"] == "AES256"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "nope"}}]})
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    s3.delete_bucket_encryption(Bucket=bucket)
    assert "ServerSideEncryption" not in s3.put_object(Bucket=bucket, Key="plain", Body=data)
    _check_reads(s3, bucket, "k", data)


def test_multipart_sse_c(s3, bucket):
    parts = [body(5 << 20, 11), body(5 << 20, 12), body(SEG + 7, 13)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", **ssec())
    assert up["SSECustomerAlgorithm"] == "AES256"
    with pytest.raises(ClientError) as e:   # every part needs the key again
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=parts[0])
    assert _code(e) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=parts[0],
                       **ssec(OTHER_KEY))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=data, **ssec())
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": done})
    whole = b"".join(parts)
    got = s3.get_object(Bucket=bucket, Key="mp", **ssec())
    assert got["Body"].read() == whole
    edge = 5 << 20
    for first, last in [(edge - 10, edge + 10), (SEG - 2, 3 * SEG), (2 * edge - 1, len(whole) - 1)]:
        part = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={first}-{last}", **ssec())
        assert part["Body"].read() == whole[first:last + 1]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", **ssec(OTHER_KEY))
    assert _code(e) == (403, "AccessDenied")


def test_multipart_sse_kms_with_upload_part_copy(s3, bucket):
    source = body((5 << 20) + 3, 21)
    s3.put_object(Bucket=bucket, Key="src", Body=source, **ssec())
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="aws:kms", SSEKMSKeyId="app-key")
    p1 = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"}, **ssec(copy=True))
    tail = body(1000, 22)
    p2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=2, Body=tail)
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert done["ServerSideEncryption"] == "aws:kms"
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["ServerSideEncryption"] == "aws:kms" and got["Body"].read() == source + tail


def test_copy_between_modes(s3, bucket):
    data = body(3 * SEG + 17, 31)
    s3.put_object(Bucket=bucket, Key="c", Body=data, **ssec())
    with pytest.raises(ClientError) as e:   # an SSE-C source needs its key
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "c"})
    assert _code(e) == (400, "InvalidRequest")
    r = s3.copy_object(Bucket=bucket, Key="s3", CopySource={"Bucket": bucket, "Key": "c"},
                       ServerSideEncryption="AES256", **ssec(copy=True))
    assert r["ServerSideEncryption"] == "AES256"
    assert r["CopyObjectResult"]["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    _check_reads(s3, bucket, "s3", data)
    r = s3.copy_object(Bucket=bucket, Key="kms", CopySource={"Bucket": bucket, "Key": "s3"},
                       ServerSideEncryption="aws:kms", SSEKMSKeyId="app-key")
    assert r["SSEKMSKeyId"] == "app-key"
    _check_reads(s3, bucket, "kms", data)
    r = s3.copy_object(Bucket=bucket, Key="c2", CopySource={"Bucket": bucket, "Key": "kms"}, **ssec(OTHER_KEY))
    assert r["SSECustomerAlgorithm"] == "AES256"
    _check_reads(s3, bucket, "c2", data, **ssec(OTHER_KEY))
    s3.copy_object(Bucket=bucket, Key="plain", CopySource={"Bucket": bucket, "Key": "c2"}, **ssec(OTHER_KEY, copy=True))
    _check_reads(s3, bucket, "plain", data)
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="plain")
    # in place: from SSE-C to SSE-S3 (S3 allows a copy onto itself that changes the encryption)
    s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "c"},
                   ServerSideEncryption="AES256", **ssec(copy=True))
    _check_reads(s3, bucket, "c", data)


def test_aws_cli_sse_c_multipart_round_trip(enc_cluster, s3, bucket, tmp_path):
    """A second client: `aws s3 cp --sse-c` uploads 9 MiB in parts and downloads it in ranges."""
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    key_file, src, dst = tmp_path / "key", tmp_path / "src", tmp_path / "dst"
    key_file.write_bytes(KEY)
    data = body((9 << 20) + 3, 51)
    src.write_bytes(data)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1"}
    sse = ["--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}", "--endpoint-url", enc_cluster.endpoint]
    for args in (["s3", "cp", str(src), f"s3://{bucket}/cli"], ["s3", "cp", f"s3://{bucket}/cli", str(dst)]):
        out = subprocess.run([aws, *args, *sse], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    assert dst.read_bytes() == data
    assert s3.get_object(Bucket=bucket, Key="cli", **ssec())["Body"].read() == data
    out = subprocess.run([aws, "s3", "cp", f"s3://{bucket}/cli", str(dst) + ".2", "--endpoint-url",
                          enc_cluster.endpoint], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and not os.path.exists(str(dst) + ".2")


def test_customer_keys_need_tls_and_sse_s3_a_master_key(tmp_path):
    """Defaults: SSE-C over plain HTTP is refused (S3 requires TLS) unless a TLS proxy says
    it terminated TLS; without a master key SSE-S3 is refused; neither stores anything."""
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True, storage={"segment_size": SEG}).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="sse-tls")
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="sse-tls", Key="k", Body=b"secret", **ssec())
        assert _code(e) == (400, "InvalidRequest")
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="sse-tls", Key="k", Body=b"secret", ServerSideEncryption="AES256")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "Contents" not in s3.list_objects_v2(Bucket="sse-tls")
        proxied = c.client()
        proxied.meta.events.register("before-sign.s3", lambda request, **kw: request.headers.__setitem__(
            "X-Forwarded-Proto", "https"))
        data = body(SEG + 3, 61)
        proxied.put_object(Bucket="sse-tls", Key="k", Body=data, **ssec())
        assert proxied.get_object(Bucket="sse-tls", Key="k", **ssec())["Body"].read() == data
    finally:
        c.close()


def test_minio_sdk_sse_s3_and_bucket_encryption(enc_cluster, s3, bucket):
    """A second client: the MinIO SDK's SseS3 uploads (in parts above 5 MiB), bucket
    encryption config, and ranged reads. (It sends SSE-C and SSE-KMS only over TLS.)"""
    import io

    import minio
    from minio.sse import SseS3
    from minio.sseconfig import Rule, SSEConfig

    mc = minio.Minio(f"127.0.0.1:{enc_cluster.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False,
                     region="us-east-1")
    data = body((11 << 20) + 9, 71)
    mc.put_object(bucket, "mc", io.BytesIO(data), len(data), sse=SseS3(), part_size=5 << 20)
    assert mc.stat_object(bucket, "mc").metadata["x-amz-server-side-encryption"] == "AES256"
    got = mc.get_object(bucket, "mc", offset=(5 << 20) - 7, length=SEG + 20)
    assert got.read() == data[(5 << 20) - 7:(5 << 20) - 7 + SEG + 20]
    mc.set_bucket_encryption(bucket, SSEConfig(Rule.new_sse_s3_rule()))
    assert mc.get_bucket_encryption(bucket).rule.sse_algorithm == "AES256"
    mc.put_object(bucket, "default", io.BytesIO(data[:1000]), 1000)
    assert s3.head_object(Bucket=bucket, Key="default")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="mc")["Body"].read() == data


HOSTILE = [(b"x-amz-server-side-encryption", b"\xff\xfe"), (b"x-amz-server-side-encryption", "é".encode()),
           (b"x-amz-server-side-encryption-customer-algorithm", b"AES256"),
           (b"x-amz-server-side-encryption-customer-key-MD5", "ñ==".encode()),
           (b"x-amz-server-side-encryption-context", b"\x00\x01"),
           (b"x-amz-server-side-encryption-aws-kms-key-id", b"\xc3\x28")]


@pytest.mark.parametrize("header", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_encryption_headers_get_4xx_and_change_nothing(enc_cluster, s3, bucket, header):
    from . import rawhttp
    from .signing import sign_bytes
    host = f"127.0.0.1:{enc_cluster.port}".encode()
    s3.put_object(Bucket=bucket, Key="sealed", Body=b"sealed", **ssec())
    for method, key in (("PUT", "new"), ("GET", "sealed"), ("HEAD", "sealed"), ("POST", "new?uploads")):
        target = f"/{bucket}/{key}".encode()
        extra = [header] if header[0] != b"x-amz-server-side-encryption-customer-key-MD5" else [
            (b"x-amz-server-side-encryption-customer-algorithm", b"AES256"),
            (b"x-amz-server-side-encryption-customer-key", base64.b64encode(KEY)), header]
        answer = rawhttp.request(enc_cluster.endpoint, method, target,
                                 sign_bytes(method, target, [(b"Host", host), *extra]), body=b"x" * 10)
        assert 400 <= answer.status < 500, (method, header, answer.status, answer.body[:300])
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["sealed"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
