"""Signed means signed, and no input gets a 5xx or changes anything (issue 8, S3 side).

Each test here sends what an attacker (or a broken client) would, over a raw socket
where an SDK would refuse to, and then checks what a user would: the error S3 gives,
and that nothing was stored or changed by the refused request.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from storage.config import load as load_config
from storage.node.open_disks import local_store
from storage.objects.ids import new_id

from . import rawhttp
from .harness import ACCESS_KEY, ProcCluster, pocket
from .signing import sign, sign_bytes

BODY = random.Random(8).randbytes(3000)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    c = ProcCluster(str(tmp_path_factory.mktemp("security")), embedded=True).start()
    yield c
    c.close()


@pytest.fixture
def b(gw):
    name = f"sec-{uuid.uuid4().hex[:12]}"
    gw.client().create_bucket(Bucket=name)
    return name


def signed(gw, method: str, target: str, headers: dict | None = None, body: bytes = b"",
           raw_headers: list[tuple[bytes, bytes]] = (), payload: str | None = None) -> rawhttp.Answer:
    """A SigV4 request (botocore signs every header given); `raw_headers` are sent unsigned."""
    s = sign(method, gw.endpoint + target, headers, payload=payload or hashlib.sha256(body).hexdigest())
    sent = [(k.encode(), v.encode("utf-8")) for k, v in s.headers.items()] + list(raw_headers)
    return rawhttp.request(gw.endpoint, method, target.encode(), sent, body)


def md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def keys(gw, bucket: str) -> list[str]:
    return [o["Key"] for o in gw.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def refused(answer: rawhttp.Answer, code: str | None = None) -> None:
    assert 400 <= answer.status < 500, (answer.status, answer.body[:500])
    if code:
        assert answer.code() == code, answer.body[:500]


# --- 1. unsigned x-amz-* headers -------------------------------------------------------------

def test_presigned_put_cannot_gain_unsigned_amz_headers(gw, b):
    s3 = gw.client(signature_version="s3v4")
    s3.put_object(Bucket=b, Key="secret", Body=BODY)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "upload.bin"}, ExpiresIn=600)
    attack = rawhttp.fetch("PUT", url, {"x-amz-copy-source": f"/{b}/secret", "x-amz-acl": "public-read"})
    refused(attack, "AccessDenied")
    assert b"<HeadersNotSigned>x-amz-acl, x-amz-copy-source</HeadersNotSigned>" in attack.body
    assert keys(gw, b) == ["secret"]
    # x-amz-content-sha256 is the one header S3 lets a presigned request add unsigned
    upload = rawhttp.fetch("PUT", url, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}, BODY[:100])
    assert upload.status == 200, upload.body
    assert s3.get_object(Bucket=b, Key="upload.bin")["Body"].read() == BODY[:100]


def test_header_signed_request_cannot_gain_unsigned_amz_headers(gw, b):
    answer = signed(gw, "PUT", f"/{b}/photo", body=BODY,
                    raw_headers=[(b"x-amz-acl", b"public-read"), (b"X-Amz-Meta-Who", b"mallory")])
    refused(answer, "AccessDenied")
    assert b"<HeadersNotSigned>x-amz-acl, x-amz-meta-who</HeadersNotSigned>" in answer.body
    assert keys(gw, b) == []
    # headers outside x-amz-* (x-amzn-trace-id is not one) may stay unsigned, as with S3
    ok = signed(gw, "PUT", f"/{b}/photo", body=BODY, raw_headers=[(b"X-Amzn-Trace-Id", b"Root=1-abc")])
    assert ok.status == 200, ok.body
    assert keys(gw, b) == ["photo"]


# --- 4. malformed input: a 4xx, never a 500, and nothing stored --------------------------------

def test_bytes_that_are_not_utf8_get_a_4xx(gw, b):
    for target in (f"/{b}/%FF%FE", f"/{b}/%ED%A0%80"):
        refused(rawhttp.request(gw.endpoint, "GET", target.encode()))
        refused(signed(gw, "GET", target))
        refused(signed(gw, "PUT", target, body=BODY))
    now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    auth = b"AWS4-HMAC-SHA256 Credential=%s/%s/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, " \
           b"Signature=%s" % (ACCESS_KEY.encode(), now[:8].encode(), b"0" * 64)
    for headers in ([(b"Authorization", auth), (b"x-amz-date", now.encode()), (b"x-amz-content-sha256", b"\xff")],
                    [(b"Authorization", auth.replace(ACCESS_KEY.encode(), b"\xff")), (b"x-amz-date", now.encode()),
                     (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD")]):
        refused(rawhttp.request(gw.endpoint, "PUT", f"/{b}/k".encode(), headers, BODY))
    # a value S3 keeps and sends back must be sendable: raw bytes in metadata are refused at PUT
    refused(signed_raw_meta(gw, b), "InvalidArgument")
    assert keys(gw, b) == []


def signed_raw_meta(gw, bucket: str) -> rawhttp.Answer:
    """A signed PUT whose x-amz-meta-note is the single byte 0xff (signed as sent)."""
    host = "%s:%d" % rawhttp.address(gw.endpoint)
    target = f"/{bucket}/meta".encode()
    sent = sign_bytes("PUT", target, [(b"Host", host.encode()), (b"x-amz-meta-note", b"\xff")],
                      hashlib.sha256(BODY).hexdigest())
    return rawhttp.request(gw.endpoint, "PUT", target, sent, BODY)


def test_unicode_digits_are_not_numbers(gw, b):
    gw.client().put_object(Bucket=b, Key="k", Body=BODY)
    # SigV2 presigned Expires, before any signature is checked
    refused(rawhttp.request(gw.endpoint, "GET", f"/{b}/k?AWSAccessKeyId={ACCESS_KEY}&Expires=%C2%B2&Signature=x".encode()))
    # aws-chunked decoded length (signed)
    refused(signed(gw, "PUT", f"/{b}/chunked", body=b"0\r\n\r\n", payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                   headers={"x-amz-decoded-content-length": "²", "Content-Encoding": "aws-chunked"}),
            "InvalidArgument")
    host = ("%s:%d" % rawhttp.address(gw.endpoint)).encode()
    raw = sign_bytes("PUT", f"/{b}/chunked".encode(), [(b"Host", host), (b"x-amz-decoded-content-length", b"\xb2"),
                                                      (b"Content-Encoding", b"aws-chunked")],
                     "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    refused(rawhttp.request(gw.endpoint, "PUT", f"/{b}/chunked".encode(), raw, b"0\r\n\r\n"), "InvalidArgument")
    # a Range of Unicode digits is no range: S3 sends the whole object
    whole = signed(gw, "GET", f"/{b}/k", headers={"Range": "bytes=²-"})
    assert whole.status == 200 and whole.body == BODY
    cors = (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
            b"<MaxAgeSeconds>%s</MaxAgeSeconds></CORSRule></CORSConfiguration>")
    for value in ("²".encode(), b"1" + b"0" * 30, b"9" * 5000):
        body = cors % value
        refused(signed(gw, "PUT", f"/{b}?cors", body=body, headers={"Content-MD5": md5(body)}), "MalformedXML")
    with pytest.raises(ClientError) as e:
        gw.client().get_bucket_cors(Bucket=b)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    upload = gw.client().create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    complete = b"<CompleteMultipartUpload><Part><PartNumber>%s</PartNumber><ETag>x</ETag></Part>" \
               b"</CompleteMultipartUpload>" % (b"9" * 5000)
    refused(signed(gw, "POST", f"/{b}/mp?uploadId={upload}", body=complete), "MalformedXML")
    assert keys(gw, b) == ["k"]


LIFECYCLE = (b"<LifecycleConfiguration><Rule><ID>r</ID><Status>Enabled</Status><Filter>%s</Filter>"
             b"<Expiration><Days>%s</Days></Expiration></Rule></LifecycleConfiguration>")


def test_lifecycle_numbers_are_bounded(gw, b):
    s3 = gw.client()
    for filt, days in ((b"<Prefix></Prefix>", b"--5"), (b"<Prefix></Prefix>", b"1000000000000000000"),
                       (b"<ObjectSizeGreaterThan>%s</ObjectSizeGreaterThan>" % (b"1" + b"0" * 27), b"1")):
        body = LIFECYCLE % (filt, days)
        refused(signed(gw, "PUT", f"/{b}?lifecycle", body=body, headers={"Content-MD5": md5(body)}))
        with pytest.raises(ClientError) as e:
            s3.get_bucket_lifecycle_configuration(Bucket=b)
        assert e.value.response["Error"]["Code"] == "NoSuchLifecycleConfiguration"
    # the largest Days S3 takes expires objects after year 9999: stored, and objects still work
    body = LIFECYCLE % (b"<Prefix></Prefix>", b"2147483647")
    assert signed(gw, "PUT", f"/{b}?lifecycle", body=body, headers={"Content-MD5": md5(body)}).status == 200
    put = s3.put_object(Bucket=b, Key="kept", Body=BODY)
    assert "Expiration" not in put
    assert s3.head_object(Bucket=b, Key="kept")["ContentLength"] == len(BODY)
    assert s3.get_object(Bucket=b, Key="kept")["Body"].read() == BODY


def test_read_routes_check_the_bucket_name(gw):
    for target in ("/" + "a" * 64, "/nul%00x", "/nul%00x/key", "/Upper/key"):
        for method in ("GET", "HEAD"):
            refused(signed(gw, method, target), None if method == "HEAD" else "InvalidBucketName")
            refused(rawhttp.request(gw.endpoint, method, target.encode(), [(b"Origin", b"https://a.example")]))


def test_response_overrides_cannot_inject_headers(gw, b):
    s3 = gw.client(signature_version="s3v4")
    s3.put_object(Bucket=b, Key="k", Body=BODY)
    for param in ("ResponseContentType", "ResponseContentDisposition", "ResponseCacheControl"):
        url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k", param: "a\r\nSet-Cookie: x=1"})
        answer = rawhttp.fetch("GET", url)
        refused(answer, "InvalidArgument")
        assert "set-cookie" not in answer.headers


def test_settings_that_go_out_in_headers_cannot_carry_line_breaks(gw, b):
    """CORS values and lifecycle rule ids are sent back in response headers: a line break
    there made every later matching request lose its connection (or inject a header)."""
    s3 = gw.client()
    s3.put_object(Bucket=b, Key="k", Body=BODY)
    cors = (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
            b"<ExposeHeader>ETag\nSet-Cookie: x=1</ExposeHeader></CORSRule></CORSConfiguration>")
    refused(signed(gw, "PUT", f"/{b}?cors", body=cors, headers={"Content-MD5": md5(cors)}), "InvalidArgument")
    rules = LIFECYCLE.replace(b"<ID>r</ID>", b"<ID>r\nSet-Cookie: x=1</ID>") % (b"<Prefix></Prefix>", b"5")
    refused(signed(gw, "PUT", f"/{b}?lifecycle", body=rules, headers={"Content-MD5": md5(rules)}), "InvalidArgument")
    answer = rawhttp.request(gw.endpoint, "GET", f"/{b}/k".encode(), [(b"Origin", b"https://app.example")])
    assert answer.status == 403 and "set-cookie" not in answer.headers   # a private object, no CORS rule
    assert s3.put_object(Bucket=b, Key="k2", Body=BODY)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "Expiration" not in s3.head_object(Bucket=b, Key="k2")


# --- 3. bucket records the index cannot store -------------------------------------------------

def test_index_rebuild_skips_a_record_it_cannot_apply(tmp_path):
    c = ProcCluster(str(tmp_path / "c"), embedded=True).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="doc", Body=BODY)
        s3.put_bucket_cors(Bucket="kept", CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["GET"], "MaxAgeSeconds": 60}]})
        # a value the index refuses is refused before it reaches a disk
        with pytest.raises(ClientError) as e:
            s3.put_bucket_cors(Bucket="kept", CORSConfiguration={"CORSRules": [
                {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "MaxAgeSeconds": 10 ** 30}]})
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        c.stop("gateway")
        # one written by a gateway before the fix: the rebuild must survive it
        cfg = load_config(c.config)
        bad = json.dumps({"kind": "bucket-config", "name": "kept", "id": new_id(),
                          "config": {"cors": [{"origins": ["*"], "methods": ["GET"], "headers": [], "expose": [],
                                               "max_age": 10 ** 30}]}}).encode()
        import asyncio
        rec_id = json.loads(bad)["id"]
        for node in cfg.nodes:
            for disk in node.disks:
                store = local_store(cfg, disk)
                try:
                    asyncio.run(store.put_record(rec_id, bad))
                finally:
                    store.close()
        code, report = pocket(c, "index", "rebuild", "--json", ok=(1,))
        assert report["records_skipped"] == 1
        assert report["skipped"][0]["id"] == rec_id and report["skipped"][0]["kind"] == "bucket-config"
        assert report["buckets"] == 1 and report["objects"] == 1
        c.start_gateway()
        rules = c.client().get_bucket_cors(Bucket="kept")["CORSRules"]
        assert [r["MaxAgeSeconds"] for r in rules] == [60]
        assert c.client().get_object(Bucket="kept", Key="doc")["Body"].read() == BODY
    finally:
        c.close()


# --- 6. the low ones ---------------------------------------------------------------------------

def test_anonymous_requests_cannot_override_response_headers(gw, b):
    s3 = gw.client()
    s3.put_bucket_ownership_controls(Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    s3.put_object(Bucket=b, Key="public.html", Body=BODY, ACL="public-read")
    plain = rawhttp.fetch("GET", f"{gw.endpoint}/{b}/public.html")
    assert plain.status == 200 and plain.body == BODY
    refused(rawhttp.fetch("GET", f"{gw.endpoint}/{b}/public.html?response-content-type=text/html"), "InvalidRequest")
    signed_url = gw.client(signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": b, "Key": "public.html", "ResponseContentType": "text/plain"})
    assert rawhttp.fetch("GET", signed_url).headers["content-type"] == "text/plain"


def test_keys_with_control_characters_list_as_s3_writes_them(gw, b):
    s3 = gw.client()
    key = "line\x01one\rtwo\x1f"
    s3.put_object(Bucket=b, Key=key, Body=BODY)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == [key]   # botocore asks for url encoding
    listing = signed(gw, "GET", f"/{b}?list-type=2")
    assert listing.status == 200
    assert b"<Key>line&#x1;one&#xD;two&#x1F;</Key>" in listing.body
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == BODY


def test_sigv2_presigned_urls_live_at_most_seven_days(gw, b):
    s3 = gw.client(signature_version="s3")
    s3.put_object(Bucket=b, Key="k", Body=BODY)
    too_long = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=8 * 86400)
    assert "Expires=" in too_long and "AWSAccessKeyId=" in too_long
    answer = rawhttp.fetch("GET", too_long)
    assert answer.status == 403 and answer.code() == "AccessDenied"
    week = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=7 * 86400 - 60)
    assert rawhttp.fetch("GET", week).body == BODY


def test_malformed_http_is_logged_in_one_line(gw):
    before = len(gw.log("gateway"))
    answer = rawhttp.request(gw.endpoint, "GET", b"/", [(b"Bad Header", b"x")])
    assert answer.status == 400
    deadline = time.monotonic() + 10
    while "Error handling request" not in gw.log("gateway")[before:] and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = gw.log("gateway")[before:]
    assert "Error handling request" in logged and "answered 400" in logged
    assert "Traceback" not in logged
