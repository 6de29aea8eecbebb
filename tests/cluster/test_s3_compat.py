"""S3 compatibility beyond the core: payload modes, presigned URLs, virtual hosts, copy,
batch delete, conditional requests, tagging, and two real clients (boto3, MinIO).

Every refused request is checked twice: the S3 error code a client sees, and that
nothing changed (no object, the old object intact, no fragment archives left over).
"""
import base64
import email.utils
import datetime
import hashlib
import io
import json
import shutil
import socket
import struct
import threading
import urllib.request
import uuid
import zlib
from unittest import mock

import boto3
import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from . import forkserver, rawhttp
from .conftest import payload
from .harness import ACCESS_KEY, SECRET_KEY, metric, wait_for
from .signing import send, sign, signed_chunks


def _code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _xml_code(body: bytes) -> str:
    text = body.decode()
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _absent(s3, bucket, key):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# --- payload modes ---------------------------------------------------------------------------

def _force_trailer(params, **_):
    """What boto3 does over https by default, made to happen over http."""
    algorithm = params.get("context", {}).get("checksum", {}).get("request_algorithm")
    if isinstance(algorithm, dict):
        algorithm["in"] = "trailer"


def test_boto3_unsigned_trailer_upload(cluster, bucket):
    s3 = cluster.client()
    s3.meta.events.register("before-call.s3.PutObject", _force_trailer)
    sent = {}
    s3.meta.events.register("before-send.s3.PutObject",
                            lambda request, **_: sent.update({k.lower(): v for k, v in request.headers.items()}))
    data = payload(300_000)
    put = s3.put_object(Bucket=bucket, Key="trailer", Body=data, ContentType="text/x-test")
    assert sent["x-amz-content-sha256"] == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert sent["transfer-encoding"] == b"chunked"  # no Content-Length at all: the decoded length decides
    assert put["ChecksumCRC32"] == _crc32(data)
    got = cluster.client().get_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == _crc32(data)
    assert got["ContentType"] == "text/x-test"
    assert "ContentEncoding" not in got  # aws-chunked describes the transfer, not the object


def _unsigned_trailer_request(cluster, bucket, key, data, checksum=None, decoded=None):
    body = AwsChunkedWrapper(io.BytesIO(data), Crc32Checksum, "x-amz-checksum-crc32", 65536).read()
    if checksum is not None:
        body = body.replace(_crc32(data).encode(), checksum.encode())
    s = sign("PUT", f"{cluster.endpoint}/{bucket}/{key}", {
        "Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data) if decoded is None else decoded),
        "x-amz-sdk-checksum-algorithm": "CRC32"}, payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    return send(s, body)


def test_unsigned_trailer_with_wrong_checksum_stores_nothing(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="kept", Body=b"old")
    before = cluster.archive_files()
    status, _, body = _unsigned_trailer_request(cluster, bucket, "kept", payload(200_000), _crc32(b"x"))
    assert (status, _xml_code(body)) == (400, "BadDigest")
    status, _, body = _unsigned_trailer_request(cluster, bucket, "new", payload(1000), _crc32(b"x"))
    assert (status, _xml_code(body)) == (400, "BadDigest")
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"old"
    assert _absent(s3, bucket, "new")
    assert cluster.archive_files() == before


def test_decoded_length_must_match(cluster, bucket):
    s3 = cluster.client()
    before = cluster.archive_files()
    for decoded in (999, 1001):
        status, _, body = _unsigned_trailer_request(cluster, bucket, "len", payload(1000), decoded=decoded)
        assert (status, _xml_code(body)) == (400, "IncompleteBody")
    assert _absent(s3, bucket, "len")
    assert cluster.archive_files() == before


def _signed_streaming(cluster, bucket, key, data, chunk=65536, trailer=False, tamper_chunk=None):
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
               "x-amz-meta-mode": "signed-stream"}
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
        mode += "-TRAILER"
    s = sign("PUT", f"{cluster.endpoint}/{bucket}/{key}", headers, payload=mode)
    body = signed_chunks(s, data, chunk, [("x-amz-checksum-crc32", _crc32(data))] if trailer else None,
                         tamper_chunk)
    return send(s, body)


@pytest.mark.parametrize("trailer", [False, True])
def test_signed_streaming_upload(cluster, bucket, trailer):
    s3 = cluster.client()
    data = payload(1_300_000)  # several chunks, more than one segment, erasure coded
    status, headers, body = _signed_streaming(cluster, bucket, "signed", data, trailer=trailer)
    assert status == 200, body
    assert headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="signed")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"mode": "signed-stream"}
    assert got["ContentLength"] == len(data)


@pytest.mark.parametrize("tamper", [0, 3, 20])  # first, middle, final (empty) chunk
def test_bad_chunk_signature_stores_nothing(cluster, bucket, tamper):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="victim", Body=b"original")
    before = cluster.archive_files()
    data = payload(1_300_000)
    status, _, body = _signed_streaming(cluster, bucket, "victim", data, tamper_chunk=tamper)
    assert (status, _xml_code(body)) == (403, "SignatureDoesNotMatch")
    status, _, body = _signed_streaming(cluster, bucket, "fresh", data, tamper_chunk=tamper)
    assert (status, _xml_code(body)) == (403, "SignatureDoesNotMatch")
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"original"
    assert _absent(s3, bucket, "fresh")
    assert cluster.archive_files() == before


def _bad_streaming_requests(cluster, bucket, key):
    """Broken aws-chunked uploads, each with the S3 error it must get."""
    data = payload(5000)
    url = f"{cluster.endpoint}/{bucket}/{key}"
    streaming = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    out = []
    s = sign("PUT", url, {"Content-Encoding": "aws-chunked"}, payload=streaming)       # no decoded length
    out.append(("MissingContentLength", 411, s, signed_chunks(s, data, 1000)))
    s = sign("PUT", url, {"x-amz-decoded-content-length": str(6 << 30)}, payload=streaming)
    out.append(("EntityTooLarge", 400, s, signed_chunks(s, data, 1000)))
    s = sign("PUT", url, {"x-amz-decoded-content-length": "5000"}, payload=streaming)
    out.append(("IncompleteBody", 400, s, signed_chunks(s, data, 1000)[:-40]))       # cut short
    s = sign("PUT", url, {"x-amz-decoded-content-length": "5000"}, payload=streaming)
    out.append(("InvalidRequest", 400, s, b"zz;" + signed_chunks(s, data, 1000)))    # broken framing
    s = sign("PUT", url, {"x-amz-decoded-content-length": "5000", "x-amz-trailer": "x-amz-checksum-crc32"},
             payload=streaming + "-TRAILER")
    body = signed_chunks(s, data, 1000, [("x-amz-checksum-crc32", _crc32(data))])
    out.append(("SignatureDoesNotMatch", 403, s, body.replace(b"x-amz-trailer-signature:", b"x-amz-trailer-signature:0")))
    s = sign("PUT", url, {"x-amz-decoded-content-length": "5000", "x-amz-trailer": "x-amz-checksum-crc32"},
             payload=streaming + "-TRAILER")
    out.append(("MalformedTrailerError", 400, s, signed_chunks(s, data, 1000, [])))   # declared, never sent
    s = sign("PUT", url, {"x-amz-decoded-content-length": "5000", "x-amz-trailer": "x-amz-checksum-crc32"},
             payload=streaming + "-TRAILER")
    out.append(("BadDigest", 400, s, signed_chunks(s, data, 1000, [("x-amz-checksum-crc32", _crc32(b"no"))])))
    return out


def test_broken_streaming_uploads_store_nothing(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="old", Body=b"untouched")
    before = cluster.archive_files()
    for key in ("old", "new"):
        for code, status, signed, body in _bad_streaming_requests(cluster, bucket, key):
            got_status, _, answer = send(signed, body)
            assert (got_status, _xml_code(answer)) == (status, code), (key, code, answer[:300])
    assert s3.get_object(Bucket=bucket, Key="old")["Body"].read() == b"untouched"
    assert _absent(s3, bucket, "new")
    assert cluster.archive_files() == before


def test_decoded_length_chooses_the_small_object_policy(cluster, bucket):
    before = cluster.archive_files()
    status, _, body = _signed_streaming(cluster, bucket, "small", payload(1000), chunk=300)
    assert status == 200, body
    assert len(cluster.archive_files() - before) == 3  # replica:3, not ec:4+2's six archives


def test_gzip_content_encoding_is_stored_as_sent(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="gz", Body=b"\x1f\x8bnot really gzip", ContentEncoding="gzip")
    got = s3.get_object(Bucket=bucket, Key="gz")
    assert got["ContentEncoding"] == "gzip"
    assert got["Body"].read() == b"\x1f\x8bnot really gzip"


# --- presigned URLs --------------------------------------------------------------------------

def _open(url, method="GET", data=None, headers=None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _presigner(cluster):
    """boto3 presigns with Signature Version 2 unless asked for s3v4, which Pocket requires."""
    return cluster.client(signature_version="s3v4")


def test_presigned_round_trip(cluster, bucket):
    s3 = _presigner(cluster)
    url = lambda op, **kw: s3.generate_presigned_url(op, Params={"Bucket": bucket, "Key": "pre", **kw},
                                                     ExpiresIn=300)
    status, _, _ = _open(url("put_object"), "PUT", b"presigned body", {"Content-Type": "text/plain"})
    assert status == 200
    status, _, body = _open(url("get_object"))
    assert (status, body) == (200, b"presigned body")
    status, headers, _ = _open(url("head_object"), "HEAD")
    assert (status, headers["Content-Length"]) == (200, "14")
    status, _, _ = _open(url("delete_object"), "DELETE")
    assert status == 204
    assert _absent(s3, bucket, "pre")


def test_presigned_url_expires(cluster, bucket):
    s3 = _presigner(cluster)
    s3.put_object(Bucket=bucket, Key="exp", Body=b"still here")
    urls = {op: s3.generate_presigned_url(op, Params={"Bucket": bucket, "Key": "exp"}, ExpiresIn=1)
            for op in ("get_object", "put_object", "delete_object")}
    wait_for("the 1 s presigned GET URL to expire", lambda: _open(urls["get_object"])[0] == 403,
             timeout=10, every=0.2)
    for op, method, data in (("get_object", "GET", None), ("put_object", "PUT", b"replaced"),
                             ("delete_object", "DELETE", None)):
        status, _, body = _open(urls[op], method, data)
        assert (status, _xml_code(body)) == (403, "AccessDenied"), op
        assert b"Request has expired" in body
    assert s3.get_object(Bucket=bucket, Key="exp")["Body"].read() == b"still here"


def test_presigned_expiry_out_of_range(cluster, bucket):
    """X-Amz-Expires as S3 answers it: 0 is a URL already expired (403 AccessDenied); negative or
    over a week is a malformed URL (400 AuthorizationQueryParametersError). Pocket answered 400
    InvalidArgument to all three; s3-tests checks the 0 case."""
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="range", Body=b"kept")
    for expires, want in ((0, (403, "AccessDenied")), (-1000, (400, "AuthorizationQueryParametersError")),
                          (604801, (400, "AuthorizationQueryParametersError"))):
        for method, data in (("GET", None), ("PUT", b"overwritten")):
            # botocore's own signer (the CRT one boto3 prefers here refuses an expiry of 0 or less)
            request = AWSRequest(method=method, url=f"{cluster.endpoint}/{bucket}/range")
            S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1",
                             expires=expires).add_auth(request)
            status, _, body = _open(request.url, method, data)
            assert (status, _xml_code(body)) == want, (expires, method)
    assert s3.get_object(Bucket=bucket, Key="range")["Body"].read() == b"kept"


def test_presigned_url_with_tampered_key_is_refused(cluster, bucket):
    s3 = _presigner(cluster)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "a"}, ExpiresIn=300)
    status, _, body = _open(url.replace(f"/{bucket}/a?", f"/{bucket}/b?"), "PUT", b"x")
    assert (status, _xml_code(body)) == (403, "SignatureDoesNotMatch")
    assert _absent(s3, bucket, "b")


def test_default_boto3_presigned_urls_work(cluster, bucket):
    """boto3 presigns with Signature Version 2 by default; apps that hand such URLs out must keep working."""
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="v2", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2",
                                                          "ResponseContentType": "text/plain"})
    assert "AWSAccessKeyId=" in url  # Signature Version 2
    status, headers, body = _open(url)
    assert (status, body, headers["Content-Type"]) == (200, b"x", "text/plain")
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "v2-put"})
    # SigV2 signs Content-Type: send the (empty) one the URL was signed with, as S3 requires
    assert _open(put, "PUT", b"uploaded", headers={"Content-Type": ""})[0] == 200
    assert s3.get_object(Bucket=bucket, Key="v2-put")["Body"].read() == b"uploaded"
    status, _, body = _open(url.replace("/v2?", "/v2-put?"))
    assert (status, _xml_code(body)) == (403, "SignatureDoesNotMatch")
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2"}, ExpiresIn=-10)
    status, _, body = _open(expired)
    assert (status, _xml_code(body)) == (403, "AccessDenied") and b"Request has expired" in body


# --- virtual-host-style addressing -----------------------------------------------------------

@pytest.fixture
def localhost_names(monkeypatch):
    """*.localhost names the loopback (RFC 6761); make sure this machine's resolver agrees."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kw):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kw)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)


def test_virtual_host_style(cluster, localhost_names):
    vs3 = boto3.client("s3", endpoint_url=f"http://localhost:{cluster.port}", aws_access_key_id=ACCESS_KEY,
                       aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                       config=BotoConfig(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1}))
    sent = []
    vs3.meta.events.register("before-send", lambda request, **_: sent.append(request.url))
    name = f"vh-{uuid.uuid4().hex[:10]}"
    vs3.create_bucket(Bucket=name)
    vs3.put_object(Bucket=name, Key="dir/a b.txt", Body=b"virtual")
    assert vs3.get_object(Bucket=name, Key="dir/a b.txt")["Body"].read() == b"virtual"
    assert [o["Key"] for o in vs3.list_objects_v2(Bucket=name)["Contents"]] == ["dir/a b.txt"]
    assert all(url.startswith(f"http://{name}.localhost:{cluster.port}/") for url in sent)
    # the same object, path style
    assert cluster.client().get_object(Bucket=name, Key="dir/a b.txt")["Body"].read() == b"virtual"
    vs3.delete_object(Bucket=name, Key="dir/a b.txt")
    vs3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        cluster.client().head_bucket(Bucket=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_virtual_host_by_hand(cluster, bucket):
    cluster.client().put_object(Bucket=bucket, Key="k", Body=b"by hand")
    s = sign("GET", f"{cluster.endpoint}/k", {"Host": f"{bucket}.localhost:{cluster.port}"})
    status, _, body = send(s)
    assert (status, body) == (200, b"by hand")


# --- CopyObject -----------------------------------------------------------------------------

def test_copy_same_and_cross_bucket(cluster, bucket):
    s3 = cluster.client()
    other = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=other)
    data = payload(2_500_000)
    s3.put_object(Bucket=bucket, Key="src", Body=data, ContentType="image/png", Metadata={"a": "1"},
                  CacheControl="max-age=9", Tagging="t=1", ChecksumAlgorithm="SHA256")
    src = s3.head_object(Bucket=bucket, Key="src")
    result = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert result["CopyObjectResult"]["ETag"] == src["ETag"]
    result = s3.copy_object(Bucket=other, Key="x/y z", CopySource=f"{bucket}/src")
    for b, k in ((bucket, "dst"), (other, "x/y z")):
        got = s3.get_object(Bucket=b, Key=k)
        assert got["Body"].read() == data
        assert (got["ContentType"], got["Metadata"], got["CacheControl"], got["TagCount"]) == \
               ("image/png", {"a": "1"}, "max-age=9", 1)
    replaced = s3.copy_object(Bucket=other, Key="r", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                              ContentType="text/plain", Metadata={"b": "2"}, TaggingDirective="REPLACE",
                              Tagging="u=2&v=3")
    assert replaced["CopyObjectResult"]["ETag"] == src["ETag"]
    head = s3.head_object(Bucket=other, Key="r")
    assert (head["ContentType"], head["Metadata"], "CacheControl" in head) == ("text/plain", {"b": "2"}, False)
    assert s3.get_object_tagging(Bucket=other, Key="r")["TagSet"] == [{"Key": "u", "Value": "2"},
                                                                      {"Key": "v", "Value": "3"}]


def test_copy_onto_itself(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="self", Body=b"me", Metadata={"v": "1"})
    before = s3.head_object(Bucket=bucket, Key="self")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self")
    assert _code(e) == ("InvalidRequest", 400)
    assert s3.head_object(Bucket=bucket, Key="self")["LastModified"] == before["LastModified"]
    s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self", MetadataDirective="REPLACE",
                   Metadata={"v": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert (got["Body"].read(), got["Metadata"]) == (b"me", {"v": "2"})


def test_copy_source_conditions(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="c", Body=b"cond")
    head = s3.head_object(Bucket=bucket, Key="c")
    etag, modified = head["ETag"], head["LastModified"]
    past, future = modified - datetime.timedelta(hours=1), modified + datetime.timedelta(hours=1)
    before = cluster.archive_files()
    for kw in ({"CopySourceIfMatch": '"0000"'}, {"CopySourceIfNoneMatch": etag},
               {"CopySourceIfModifiedSince": future}, {"CopySourceIfUnmodifiedSince": past}):
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="c2", CopySource=f"{bucket}/c", **kw)
        assert _code(e) == ("PreconditionFailed", 412), kw
    assert _absent(s3, bucket, "c2")
    assert cluster.archive_files() == before
    # S3's precedence: If-Match true wins over If-Unmodified-Since false, and so on.
    for n, kw in enumerate(({"CopySourceIfMatch": etag}, {"CopySourceIfNoneMatch": '"0000"'},
                            {"CopySourceIfModifiedSince": past}, {"CopySourceIfUnmodifiedSince": future},
                            {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": past})):
        s3.copy_object(Bucket=bucket, Key=f"ok{n}", CopySource=f"{bucket}/c", **kw)
        assert s3.get_object(Bucket=bucket, Key=f"ok{n}")["Body"].read() == b"cond"


def test_copy_errors(cluster, bucket):
    s3 = cluster.client()
    before = cluster.archive_files()
    cases = [({"CopySource": f"{bucket}/missing"}, ("NoSuchKey", 404)),
             ({"CopySource": "no-such-bucket-here/x"}, ("NoSuchBucket", 404)),
             ({"CopySource": {"Bucket": bucket, "Key": "missing", "VersionId": "abc"}}, ("InvalidArgument", 400)),
             ({"CopySource": f"{bucket}/missing", "MetadataDirective": "BOGUS"}, ("InvalidArgument", 400))]
    for kw, want in cases:
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="dst", **kw)
        assert _code(e) == want, kw
    assert _absent(s3, bucket, "dst")
    assert cluster.archive_files() == before


# --- DeleteObjects --------------------------------------------------------------------------

def test_delete_objects(cluster, bucket):
    s3 = cluster.client()
    for k in ("a", "b", "c/d"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "c/d"}, {"Key": "nope"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["a", "c/d", "nope"]
    assert "Errors" not in out
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["b"]
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b"}], "Quiet": True})
    assert "Deleted" not in out and "Errors" not in out
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_delete_objects_per_key_errors(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="v", Body=b"1")
    s3.put_object(Bucket=bucket, Key="w", Body=b"2")
    out = s3.delete_objects(Bucket=bucket, Delete={"Quiet": True, "Objects": [
        {"Key": "v", "VersionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"}, {"Key": "k" * 1025}, {"Key": "w"}]})
    assert "Deleted" not in out
    assert sorted((e["Key"][:3], e["Code"]) for e in out["Errors"]) == [("kkk", "KeyTooLongError"),
                                                                        ("v", "NoSuchVersion")]
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"1"
    assert _absent(s3, bucket, "w")


def _delete_body(keys) -> bytes:
    return ("<Delete>" + "".join(f"<Object><Key>{k}</Key></Object>" for k in keys) + "</Delete>").encode()


def _raw_delete(cluster, bucket, body: bytes, headers: dict):
    s = sign("POST", f"{cluster.endpoint}/{bucket}?delete", headers, payload=hashlib.sha256(body).hexdigest())
    return send(s, body)


def test_delete_objects_bad_requests_delete_nothing(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="keep", Body=b"k")
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep"}] + [{"Key": f"x{i}"} for i in range(1000)]})
    assert _code(e) == ("MalformedXML", 400)
    md5 = lambda b: base64.b64encode(hashlib.md5(b).digest()).decode()
    good = _delete_body(["keep"])
    cases = [
        (b"<Delete><Object><Key>keep</Key></Object>", {"Content-MD5": md5(b"<Delete><Object><Key>keep</Key></Object>")},
         "MalformedXML"),
        (b"<Delete></Delete>", {"Content-MD5": md5(b"<Delete></Delete>")}, "MalformedXML"),
        (good, {}, "InvalidRequest"),                                          # no Content-MD5, no checksum
        (good, {"Content-MD5": md5(b"other")}, "BadDigest"),
        (good, {"x-amz-checksum-crc32": _crc32(b"other")}, "BadDigest"),
    ]
    for body, headers, code in cases:
        status, _, answer = _raw_delete(cluster, bucket, body, headers)
        assert (status, _xml_code(answer)) == (400, code), (body, headers)
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"k"
    status, _, answer = _raw_delete(cluster, bucket, good, {"x-amz-checksum-crc32": _crc32(good)})
    assert status == 200 and b"<Deleted><Key>keep</Key></Deleted>" in answer
    assert _absent(s3, bucket, "keep")


# --- conditional requests -------------------------------------------------------------------

def test_conditional_get_and_head(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    head = s3.head_object(Bucket=bucket, Key="c")
    etag, modified = head["ETag"], head["LastModified"]
    past, future = modified - datetime.timedelta(hours=1), modified + datetime.timedelta(hours=1)
    ok = [{"IfMatch": etag}, {"IfMatch": f'"0000", {etag}'}, {"IfMatch": "*"}, {"IfNoneMatch": '"0000"'},
          {"IfModifiedSince": past}, {"IfUnmodifiedSince": future},
          {"IfMatch": etag, "IfUnmodifiedSince": past}]            # If-Match true wins
    for kw in ok:
        assert s3.get_object(Bucket=bucket, Key="c", **kw)["Body"].read() == b"conditional", kw
        s3.head_object(Bucket=bucket, Key="c", **kw)
    refused = [({"IfMatch": '"0000"'}, 412), ({"IfUnmodifiedSince": past}, 412),
               ({"IfNoneMatch": etag}, 304), ({"IfNoneMatch": "*"}, 304), ({"IfModifiedSince": future}, 304),
               ({"IfNoneMatch": etag, "IfModifiedSince": past}, 304),   # If-None-Match false wins
               ({"IfMatch": '"0000"', "IfNoneMatch": etag}, 412)]       # 412 before 304
    for kw, status in refused:
        for call in (s3.get_object, s3.head_object):
            with pytest.raises(ClientError) as e:
                call(Bucket=bucket, Key="c", **kw)
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, (call, kw)
            if status == 412 and call is s3.get_object:
                assert e.value.response["Error"]["Code"] == "PreconditionFailed"
            if status == 304:
                assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag


def test_conditional_put(cluster, bucket):
    s3 = cluster.client()
    first = s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    before = cluster.archive_files()
    for kw, want in (({"IfNoneMatch": "*"}, ("PreconditionFailed", 412)),
                     ({"IfMatch": '"0000"'}, ("PreconditionFailed", 412))):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="once", Body=b"second", **kw)
        assert _code(e) == want
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="never", Body=b"x", IfMatch=first["ETag"])
    assert _code(e) == ("NoSuchKey", 404)
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"
    assert _absent(s3, bucket, "never")
    assert cluster.archive_files() == before
    s3.put_object(Bucket=bucket, Key="once", Body=b"third", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"third"


def test_conditional_put_is_atomic_with_the_commit(cluster, bucket):
    """Both writers pass the early check; the one that commits second must fail and leave
    no archives behind, so the check has to run inside the index transaction."""
    s3 = cluster.client()
    before = cluster.archive_files()
    first_half = threading.Event()
    let_go = threading.Event()

    data = payload(400_000)

    def slow_body():
        yield data[:200_000]
        first_half.set()
        let_go.wait(30)
        yield data[200_000:]

    s = sign("PUT", f"{cluster.endpoint}/{bucket}/race", {"If-None-Match": "*"})
    result = {}
    sender = threading.Thread(target=lambda: result.update(answer=send(s, slow_body())))
    received = metric(cluster.endpoint, "pocket_s3_bytes_received_total")
    sender.start()
    assert first_half.wait(30)
    wait_for("the gateway to receive the first half (it has checked the condition)",
             lambda: metric(cluster.endpoint, "pocket_s3_bytes_received_total") >= received + 200_000,
             timeout=30, every=0.02)
    s3.put_object(Bucket=bucket, Key="race", Body=b"winner", IfNoneMatch="*")
    after_winner = cluster.archive_files()
    let_go.set()
    sender.join(60)
    status, _, body = result["answer"]
    assert (status, _xml_code(body)) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="race")["Body"].read() == b"winner"
    assert cluster.archive_files() == after_winner
    assert len(after_winner - before) == 3  # the winner's replicas only


# --- authentication edge cases ---------------------------------------------------------------

@pytest.mark.parametrize("minutes", [-16, 16])
def test_clock_skew_is_refused(cluster, bucket, minutes):
    skewed = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    clock = lambda remove_tzinfo=True: skewed.replace(tzinfo=None) if remove_tzinfo else skewed
    s3 = cluster.client(retries=1)
    # boto3 signs with awscrt when it is installed, with botocore's own signer otherwise
    with mock.patch("botocore.auth.get_current_datetime", clock), \
            mock.patch("botocore.crt.auth.get_current_datetime", clock):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="skew", Body=b"late")
    assert _code(e) == ("RequestTimeTooSkewed", 403)
    assert _absent(s3, bucket, "skew")


def test_sigv2_header_auth_works_and_is_checked(cluster, bucket):
    v2 = cluster.client(retries=1, signature_version="s3")
    v2.put_object(Bucket=bucket, Key="v2", Body=b"old style", Metadata={"k": "v"}, ContentType="text/x-old")
    got = v2.get_object(Bucket=bucket, Key="v2")
    assert got["Body"].read() == b"old style" and got["Metadata"] == {"k": "v"}
    assert [o["Key"] for o in v2.list_objects(Bucket=bucket)["Contents"]] == ["v2"]
    status, _, body = _open(f"{cluster.endpoint}/{bucket}/v2-forged", "PUT", b"forged",
                            headers={"Authorization": f"AWS {ACCESS_KEY}:c2lnbmF0dXJl",
                                     "Date": email.utils.formatdate(usegmt=True)})
    assert (status, _xml_code(body)) == (403, "SignatureDoesNotMatch")
    status, _, body = _open(f"{cluster.endpoint}/{bucket}/v2-old", "PUT", b"old",
                            headers={"Authorization": f"AWS {ACCESS_KEY}:c2lnbmF0dXJl",
                                     "Date": "Tue, 27 Mar 2007 19:36:42 +0000"})
    assert (status, _xml_code(body)) == (403, "RequestTimeTooSkewed")
    assert _absent(cluster.client(), bucket, "v2-forged") and _absent(cluster.client(), bucket, "v2-old")


def _put_expecting_continue(cluster, bucket, key, headers: dict, body: bytes):
    """A PUT that sends `Expect: 100-continue` and its body only if asked: (first answer, final answer)."""
    host, port = rawhttp.address(cluster.endpoint)
    head = [f"PUT /{bucket}/{key} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}",
            "Expect: 100-continue"] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        first = rawhttp.read_answer(s, head_only=True, timeout=20)
        if first.status != 100:
            return first, None
        s.sendall(body)
        return first, rawhttp.read_answer(s, timeout=20)


def test_expect_100_continue_waits_for_the_verdict(cluster, bucket):
    """An upload refused on its headers (anonymous, forged) is answered 403 at once, without a
    `100 Continue` that would have the client send its body first, and the connection ends
    (s3-tests' test_100_continue; Pocket sent 100 before checking anything). An allowed one
    gets the 100, sends its body, and is stored."""
    anonymous, _ = _put_expecting_continue(cluster, bucket, "anon", {}, b"never sent")
    assert anonymous.status == 403 and anonymous.headers.get("connection") == "close"
    signed = sign("PUT", f"{cluster.endpoint}/{bucket}/forged").headers
    forged = {**signed, "Authorization": signed["Authorization"][:-4] + "0000"}
    first, _ = _put_expecting_continue(cluster, bucket, "forged", forged, b"never sent")
    assert first.status == 403
    signed = sign("PUT", f"{cluster.endpoint}/{bucket}/allowed").headers
    first, final = _put_expecting_continue(cluster, bucket, "allowed", signed, b"sent after 100")
    assert (first.status, final.status) == (100, 200)
    s3 = cluster.client()
    assert s3.get_object(Bucket=bucket, Key="allowed")["Body"].read() == b"sent after 100"
    assert _absent(s3, bucket, "anon") and _absent(s3, bucket, "forged")


def test_a_client_hanging_up_mid_download_is_no_server_error(cluster, bucket):
    """A download the client stops (s3-tests' atomic-read tests do; so does any player that seeks)
    is the client's choice: no 500 in the metrics 5xx alerts watch, no traceback in the log.
    Pocket logged each as 'failed' with a ConnectionResetError traceback and counted a 500."""
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="long", Body=payload(8 << 20, 31))
    series = ("pocket_s3_requests_total", 'operation="get_object",status="500"')
    before = metric(cluster.endpoint, *series)
    signed = sign("GET", f"{cluster.endpoint}/{bucket}/long")
    host, port = rawhttp.address(cluster.endpoint)
    with socket.create_connection((host, port), timeout=30) as conn:
        head = [f"GET /{bucket}/long HTTP/1.1", f"Host: {host}:{port}"] + [f"{k}: {v}" for k, v in
                                                                         signed.headers.items()]
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        first = rawhttp.read_answer(conn, head_only=True, timeout=20)
        assert first.status == 200
        request_id = first.headers["x-amz-request-id"]
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # hang up: RST
    wait_for("the cut GET's access line", lambda: f"{request_id} GET" in cluster.log("gateway"), timeout=30)
    log = cluster.log("gateway")
    assert f"failed (request {request_id})" not in log
    assert metric(cluster.endpoint, *series) == before
    assert s3.get_object(Bucket=bucket, Key="long")["Body"].read() == payload(8 << 20, 31)


# --- tagging --------------------------------------------------------------------------------

def test_tagging(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="t", Body=b"tagged", Tagging="project=pocket&empty=")
    assert s3.head_object(Bucket=bucket, Key="t")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [
        {"Key": "project", "Value": "pocket"}, {"Key": "empty", "Value": ""}]
    tags = [{"Key": f"k{i}", "Value": "v" * 256} for i in range(9)] + [{"Key": "x" * 128, "Value": ""}]
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": tags})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == tags
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="t")


def test_tagging_header_key_without_value(cluster, bucket):
    """`x-amz-tagging: foo=bar&bar` is two tags, `bar` with an empty value, as S3 parses it
    (s3-tests sends it); Pocket refused the whole PUT with 400 InvalidArgument."""
    s3 = cluster.client()
    s3.meta.events.register("before-call.s3.PutObject",
                            lambda params, **_: params["headers"].update({"x-amz-tagging": "foo=bar&bar"}))
    s3.put_object(Bucket=bucket, Key="bare", Body=b"bare tag")
    assert s3.get_object_tagging(Bucket=bucket, Key="bare")["TagSet"] == [
        {"Key": "foo", "Value": "bar"}, {"Key": "bar", "Value": ""}]


def test_invalid_tags_change_nothing(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1")
    bad_sets = [[{"Key": f"k{i}", "Value": ""} for i in range(11)],
                [{"Key": "k" * 129, "Value": ""}],
                [{"Key": "k", "Value": "v" * 257}],
                [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}],
                [{"Key": "aws:reserved", "Value": "1"}]]
    for tag_set in bad_sets:
        with pytest.raises(ClientError) as e:
            s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": tag_set})
        assert _code(e) == ("InvalidTag", 400)
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "a", "Value": "1"}]
    before = cluster.archive_files()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="t2", Body=b"x", Tagging="&".join(f"k{i}=v" for i in range(11)))
    assert _code(e) == ("InvalidTag", 400)
    assert _absent(s3, bucket, "t2")
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="t2", Tagging={"TagSet": []})
    assert _code(e) == ("NoSuchKey", 404)
    s = sign("PUT", f"{cluster.endpoint}/{bucket}/t?tagging", payload=hashlib.sha256(b"<Tagging>").hexdigest())
    status, _, body = send(s, b"<Tagging>")
    assert (status, _xml_code(body)) == (400, "MalformedXML")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "a", "Value": "1"}]
    assert cluster.archive_files() == before


def test_tags_survive_an_index_rebuild(fresh_cluster):
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="tags")
    s3.put_object(Bucket="tags", Key="at-put", Body=b"1", Tagging="from=put")
    s3.put_object(Bucket="tags", Key="changed", Body=payload(300_000), Tagging="from=put")
    s3.put_object_tagging(Bucket="tags", Key="changed", Tagging={"TagSet": [{"Key": "from", "Value": "api"}]})
    s3.put_object(Bucket="tags", Key="cleared", Body=b"3", Tagging="from=put")
    s3.delete_object_tagging(Bucket="tags", Key="cleared")
    c.stop("gateway")
    shutil.rmtree(f"{c.root}/index")
    out = forkserver.run(["index", "rebuild", "--config", c.config, "--json"], timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["objects"] == 3
    c.start_gateway()
    s3 = c.client()
    tags = {k: s3.get_object_tagging(Bucket="tags", Key=k)["TagSet"] for k in ("at-put", "changed", "cleared")}
    assert tags == {"at-put": [{"Key": "from", "Value": "put"}], "changed": [{"Key": "from", "Value": "api"}],
                    "cleared": []}


# --- the MinIO SDK: a second real client ----------------------------------------------------

def test_minio_sdk_round_trip(cluster):
    import minio  # in pyproject's test extras; minio-py signs bodies whole, never aws-chunked
    from minio.commonconfig import CopySource, Tags
    from minio.deleteobjects import DeleteObject

    mc = minio.Minio(f"127.0.0.1:{cluster.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False,
                     region="us-east-1")
    name = f"mc-{uuid.uuid4().hex[:10]}"
    mc.make_bucket(name)
    assert mc.bucket_exists(name)
    data = payload(700_000)
    put = mc.put_object(name, "dir/obj", io.BytesIO(data), len(data), content_type="application/x-mc",
                        metadata={"x-amz-meta-who": "minio"})
    assert put.etag == hashlib.md5(data).hexdigest()
    mc.put_object(name, "small", io.BytesIO(b"tiny"), 4)
    stat = mc.stat_object(name, "dir/obj")
    assert (stat.size, stat.content_type, stat.metadata["x-amz-meta-who"]) == (len(data), "application/x-mc", "minio")
    resp = mc.get_object(name, "dir/obj")
    try:
        assert resp.read() == data
    finally:
        resp.close()
        resp.release_conn()
    resp = mc.get_object(name, "dir/obj", offset=10, length=20)
    try:
        assert resp.read() == data[10:30]
    finally:
        resp.close()
        resp.release_conn()
    assert sorted(o.object_name for o in mc.list_objects(name, recursive=True)) == ["dir/obj", "small"]
    assert sorted(o.object_name for o in mc.list_objects(name)) == ["dir/", "small"]
    tags = Tags.new_object_tags()
    tags["team"] = "storage"
    mc.set_object_tags(name, "small", tags)
    assert dict(mc.get_object_tags(name, "small")) == {"team": "storage"}
    mc.copy_object(name, "copied", CopySource(name, "dir/obj"))
    assert mc.stat_object(name, "copied").etag == put.etag
    mc.remove_object(name, "small")
    errors = list(mc.remove_objects(name, [DeleteObject("dir/obj"), DeleteObject("copied")]))
    assert errors == []
    assert list(mc.list_objects(name, recursive=True)) == []
    mc.remove_bucket(name)
    assert not mc.bucket_exists(name)
