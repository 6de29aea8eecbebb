"""Property-based fuzzing of the S3 front door against a running gateway (issue 8).

Hypothesis builds requests no SDK would send: methods and sub-resources in any mix,
bucket names and keys of arbitrary bytes (percent-encoded or raw), hostile query
parameters and headers (Unicode digits, huge numbers, non-UTF-8 bytes, signature
fields), XML bodies with bad numbers and text, and aws-chunked framing that lies; each
sent unsigned, signed (raw-bytes SigV4 over everything, signing.sign_bytes) or signed
and then tampered with. Half are real S3 operations (listings, uploads, multipart,
CORS, lifecycle, tagging, versioning, ACL, deletes) signed and well framed, with the
hostile values inside, so they reach the handlers. For every one:

- the answer is never a 5xx (but 501 NotImplemented), and always arrives (the gateway neither crashes nor hangs);
- a refused request (not 2xx/3xx) changes nothing: buckets, versions, CORS, lifecycle,
  ACL and uploads read back exactly as before it.

Derandomized (the same requests on every run, so CI is reproducible) and bounded:
MAX_EXAMPLES requests plus the reads that check them, about a minute on a loaded CI
machine. The count sent is printed and recorded as the test's `requests_sent` property.
"""
from __future__ import annotations

import base64
import hashlib
import random
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from . import rawhttp
from .harness import ProcCluster
from .signing import sign_bytes

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)

MAX_EXAMPLES = 800
SEED = random.Random(11).randbytes(2000)
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_REQUEST_ID = re.compile(rb"<RequestId>[^<]*</RequestId>|<HostId>[^<]*</HostId>")


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    c = ProcCluster(str(tmp_path_factory.mktemp("fuzz")), embedded=True,
                    gateway={"header_timeout": 5.0, "body_timeout": 2.0}).start()
    s3 = c.client()
    s3.create_bucket(Bucket="fuzz")
    s3.put_object(Bucket="fuzz", Key="seed", Body=SEED)
    c.upload_id = s3.create_multipart_upload(Bucket="fuzz", Key="open-upload")["UploadId"].encode()
    yield c
    c.close()


# --- what a request is made of -----------------------------------------------------------------

def _encode(raw: bytes, keep_slash: bool = False) -> bytes:
    return b"".join(bytes([c]) if c in _SAFE or (keep_slash and c == 47) else b"%%%02X" % c for c in raw)


_names = st.one_of(st.just(b"fuzz"), st.just(b"fuzz"), st.just(b"fuzz"), st.sampled_from([b"fuzz", b"FUZZ", b"a" * 64, b"nul\x00x", b"xn--a", b"1.2.3.4", b"fuzz.",
                                    b"other-bucket", b"ab"]), st.binary(max_size=70))
_keys = st.one_of(st.just(b"seed"), st.text("abcxyz/. -", max_size=12).map(str.encode), st.sampled_from([b"", b"seed", b"open-upload", b"\xff\xfe", b"\xed\xa0\x80", b"a\x00b", b"x" * 1100,
                                   b"../../etc/passwd", b"dir//file", b"%", b"+ +"]), st.binary(max_size=40))
_numbers = st.one_of(st.integers(-10 ** 30, 10 ** 30).map(lambda n: str(n).encode()),
                     st.sampled_from(["²", "٣", "--5", "+5", " 7", "0x10", "1e3", "1_000", "", "9" * 5000,
                                      "18446744073709551616", "2147483648"]).map(lambda s: s.encode()))
_texts = st.one_of(st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=20).map(str.encode),
                   st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=20))
_header_values = st.one_of(_numbers, _texts, st.sampled_from([
    b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD", b"STREAMING-UNSIGNED-PAYLOAD-TRAILER", b"UNSIGNED-PAYLOAD",
    b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", b"bytes=0-", b"bytes=5-1", b"bytes=-0", b"/fuzz/seed",
    b"/fuzz/seed?versionId=null", b"public-read", b"aws-chunked", b"\xff", b"x-amz-checksum-crc32",
    b"AWS4-HMAC-SHA256 Credential=\xff", b"AWS PKTESTACCESSKEY000001:abc", b"REPLACE", b"Enabled", b"*",
    b"Sun, 06 Nov 1994 08:49:37 GMT", b"CRC32", b"AAAAAA==", b"a=b&c=d"])).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b""))
_header_names = st.sampled_from([
    b"x-amz-content-sha256", b"x-amz-date", b"x-amz-decoded-content-length", b"x-amz-copy-source",
    b"x-amz-copy-source-range", b"x-amz-acl", b"x-amz-meta-note", b"x-amz-tagging", b"x-amz-checksum-crc32",
    b"x-amz-checksum-sha256", b"x-amz-sdk-checksum-algorithm", b"x-amz-trailer", b"x-amz-metadata-directive",
    b"x-amz-object-attributes", b"x-amz-max-parts", b"x-amz-part-number-marker", b"x-amz-checksum-mode",
    b"x-amz-storage-class", b"x-amz-grant-read", b"x-amz-copy-source-if-match", b"Content-MD5", b"Content-Type",
    b"Content-Encoding", b"Cache-Control", b"Expires", b"Range", b"If-Match", b"If-None-Match",
    b"If-Modified-Since", b"If-Unmodified-Since", b"Origin", b"Access-Control-Request-Method",
    b"Access-Control-Request-Headers", b"Authorization", b"Date", b"Expect"])
_query_names = st.sampled_from([
    "acl", "cors", "lifecycle", "tagging", "uploads", "delete", "versioning", "versions", "location", "attributes",
    "list-type", "max-keys", "prefix", "delimiter", "marker", "start-after", "continuation-token", "encoding-type",
    "partNumber", "uploadId", "versionId", "key-marker", "upload-id-marker", "max-uploads", "max-parts",
    "part-number-marker", "response-content-type", "response-content-disposition", "response-expires",
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
    "X-Amz-Signature", "AWSAccessKeyId", "Expires", "Signature", "policy", "website", "select"]).map(str.encode)
_xml = st.builds(lambda template, a, b: template % (a, b), st.sampled_from([
    b"<CORSConfiguration><CORSRule><AllowedOrigin>%s</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
    b"<MaxAgeSeconds>%s</MaxAgeSeconds></CORSRule></CORSConfiguration>",
    b"<LifecycleConfiguration><Rule><ID>%s</ID><Status>Enabled</Status><Filter><Prefix></Prefix></Filter>"
    b"<Expiration><Days>%s</Days></Expiration></Rule></LifecycleConfiguration>",
    b"<LifecycleConfiguration><Rule><ID>%s</ID><Status>Enabled</Status><Filter><ObjectSizeGreaterThan>%s"
    b"</ObjectSizeGreaterThan></Filter><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>",
    b"<Tagging><TagSet><Tag><Key>%s</Key><Value>%s</Value></Tag></TagSet></Tagging>",
    b"<Delete><Object><Key>%s</Key><VersionId>%s</VersionId></Object></Delete>",
    b"<CompleteMultipartUpload><Part><ETag>%s</ETag><PartNumber>%s</PartNumber></Part></CompleteMultipartUpload>",
    b"<VersioningConfiguration><Status>%s</Status><MfaDelete>%s</MfaDelete></VersioningConfiguration>",
    b"<CreateBucketConfiguration><LocationConstraint>%s%s</LocationConstraint></CreateBucketConfiguration>",
    b"<AccessControlPolicy><Owner><ID>%s</ID></Owner><AccessControlList><Grant><Permission>%s</Permission>"
    b"</Grant></AccessControlList></AccessControlPolicy>"]), _texts, _numbers)


@st.composite
def _chunked(draw) -> bytes:
    """aws-chunked framing, honest or lying: sizes, signatures, the final chunk, trailers."""
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        data = draw(st.binary(max_size=64))
        size = draw(st.sampled_from([b"%x" % len(data), b"%x" % (len(data) + 1), b"zz", b"-1", b"", b"1" * 20]))
        signature = draw(st.sampled_from([b"", b";chunk-signature=" + b"0" * 64, b";chunk-signature=\xff",
                                          b";x=y"]))
        out += size + signature + b"\r\n" + data + draw(st.sampled_from([b"\r\n", b"", b"\n"]))
    if draw(st.booleans()):
        out += b"0" + draw(st.sampled_from([b"", b";chunk-signature=" + b"1" * 64])) + b"\r\n"
        for _ in range(draw(st.integers(0, 2))):
            out += draw(st.sampled_from([b"x-amz-checksum-crc32", b"x-amz-trailer-signature", b"bad header",
                                         b""])) + b":" + draw(_header_values) + b"\r\n"
        out += draw(st.sampled_from([b"\r\n", b""]))
    return out


_OPERATIONS = [   # (method, target, body strategy): real S3 operations to aim the bad values at
    ("GET", b"/fuzz?list-type=2&max-keys=%s&prefix=%s", None), ("GET", b"/fuzz?max-keys=%s&marker=%s", None),
    ("GET", b"/fuzz?versions&max-keys=%s&key-marker=%s", None), ("GET", b"/fuzz?uploads&max-uploads=%s&prefix=%s", None),
    ("GET", b"/fuzz/open-upload?uploadId=UPLOAD&max-parts=%s&part-number-marker=%s", None),
    ("GET", b"/fuzz/seed?partNumber=%s&versionId=%s", None), ("HEAD", b"/fuzz/seed?partNumber=%s&x=%s", None),
    ("GET", b"/fuzz/seed?response-content-type=%s&response-expires=%s", None),
    ("PUT", b"/fuzz/open-upload?partNumber=%s&uploadId=UPLOAD%s", st.binary(max_size=200)),
    ("POST", b"/fuzz/open-upload?uploadId=UPLOAD&x=%s%s", _xml), ("PUT", b"/fuzz/new-%s%s", st.binary(max_size=200)),
    ("PUT", b"/fuzz?cors&x=%s%s", _xml), ("PUT", b"/fuzz?lifecycle&x=%s%s", _xml), ("PUT", b"/fuzz?tagging&x=%s%s", _xml),
    ("PUT", b"/fuzz/seed?tagging&x=%s%s", _xml), ("POST", b"/fuzz?delete&x=%s%s", _xml),
    ("PUT", b"/fuzz?versioning&x=%s%s", _xml), ("PUT", b"/fuzz?acl&x=%s%s", _xml), ("PUT", b"/fuzz-%s%s", _xml),
    ("POST", b"/fuzz/new-%s?uploads&x=%s", st.just(b"")), ("GET", b"/fuzz/seed?attributes&x=%s%s", None),
    ("DELETE", b"/fuzz/open-upload?uploadId=%s%s", None), ("DELETE", b"/fuzz/seed?versionId=%s%s", None)]


@st.composite
def operations(draw):
    """A signed S3 operation that gets past the front door, with hostile values inside."""
    method, template, bodies = draw(st.sampled_from(_OPERATIONS))
    target = template % (_encode(draw(_numbers)), _encode(draw(_texts)))
    headers = draw(st.lists(st.tuples(_header_names, _header_values), max_size=3))
    body = draw(bodies) if bodies is not None else b""
    headers.append((b"Content-MD5", base64.b64encode(hashlib.md5(body).digest())))
    return method, target, headers, body, "signed", "sha256", (b"x-amz-acl", b"private")


_FORM_FIELDS = st.sampled_from([b"key", b"policy", b"x-amz-signature", b"x-amz-credential", b"x-amz-algorithm",
                                b"x-amz-date", b"AWSAccessKeyId", b"signature", b"acl", b"tagging", b"Content-Type",
                                b"success_action_status", b"success_action_redirect", b"x-amz-meta-a", b"bucket"])


@st.composite
def forms(draw):
    """A browser form upload (POST object) with hostile fields, some cut short."""
    boundary = b"fz" + draw(st.binary(min_size=1, max_size=8)).hex().encode()
    fields = draw(st.lists(st.tuples(_FORM_FIELDS, st.one_of(_texts, _numbers, _header_values)), max_size=6))
    body = b"".join(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value
                    + b"\r\n" for name, value in fields)
    body += (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
             + draw(st.binary(max_size=200)) + b"\r\n--" + boundary + b"--\r\n")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(max_size=8))
    headers = [(b"Content-Type", b"multipart/form-data; boundary=" + boundary)]
    return "POST", b"/fuzz", headers, body, draw(st.sampled_from(["unsigned", "signed"])), "sha256", \
        (b"x-amz-acl", b"private")


@st.composite
def hostile(draw):
    method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS"]))
    bucket, key = draw(_names), draw(_keys)
    raw_path = draw(st.integers(0, 3)) == 0
    if raw_path:   # bytes straight into the request line (no space, CR, LF, ? or #)
        clean = lambda b: bytes(c for c in b if c not in b" \r\n?#\t")
        path = b"/" + clean(bucket) + (b"/" + clean(key) if key else b"")
    else:
        path = b"/" + _encode(bucket) + (b"/" + _encode(key, keep_slash=draw(st.booleans())) if key else b"")
    params = draw(st.lists(st.tuples(_query_names, st.one_of(st.just(None), _numbers, _texts)), max_size=4))
    query = b"&".join(name if value is None else name + b"=" + _encode(value) for name, value in params)
    target = path + (b"?" + query if query else b"")
    headers = draw(st.lists(st.tuples(_header_names, _header_values), max_size=4))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=300), _xml, _chunked()))
    if draw(st.booleans()):   # a body cut or spliced, as a broken client or proxy would
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(max_size=8)) + body[at + draw(st.integers(0, 8)):]
    mode = draw(st.sampled_from(["unsigned", "signed", "signed", "signed", "tampered"]))
    payload = draw(st.sampled_from(["sha256", "sha256", "UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"]))
    if draw(st.booleans()):   # most configuration PUTs need it to get past the front door
        headers.append((b"Content-MD5", base64.b64encode(hashlib.md5(body).digest())))
    tamper = draw(st.tuples(_header_names, _header_values))
    return method, target, headers, body, mode, payload, tamper


# --- the property ------------------------------------------------------------------------------

def _snapshot(gw) -> list[bytes]:
    """What a refused request must leave as it was."""
    host = b"%s:%d" % (rawhttp.address(gw.endpoint)[0].encode(), rawhttp.address(gw.endpoint)[1])
    seen = []
    for target in (b"/", b"/fuzz?versions", b"/fuzz?cors", b"/fuzz?lifecycle", b"/fuzz?acl", b"/fuzz?uploads",
                   b"/fuzz?versioning", b"/fuzz/seed?tagging", b"/fuzz?tagging"):
        answer = rawhttp.request(gw.endpoint, "GET", target, sign_bytes("GET", target, [(b"Host", host)]))
        assert answer.status < 500, (target, answer.status, answer.body[:300])
        seen.append(b"%d " % answer.status + _REQUEST_ID.sub(b"", answer.body))
    return seen


def _send(gw, method, target, headers, body, mode, payload, tamper) -> rawhttp.Answer:
    host = b"%s:%d" % (rawhttp.address(gw.endpoint)[0].encode(), rawhttp.address(gw.endpoint)[1])
    target = target.replace(b"UPLOAD", gw.upload_id)
    headers = [(b"Host", host)] + list(headers)
    if mode != "unsigned":
        token = hashlib.sha256(body).hexdigest() if payload == "sha256" else payload
        headers = [(n, v) for n, v in headers if n.lower() not in (b"authorization", b"x-amz-date",
                                                                   b"x-amz-content-sha256")]
        headers = sign_bytes(method, target, headers, token)
        if mode == "tampered":   # a captured request, one header added or changed
            headers = [(n, v) for n, v in headers if n.lower() != tamper[0].lower()] + [tamper]
    return rawhttp.request(gw.endpoint, method, target, headers, body, timeout=20)


def test_no_request_gets_a_5xx_or_changes_anything_when_refused(gw, record_property):
    sent = {"requests": 0, "refused": 0, "accepted": 0}
    codes: dict[tuple[int, str], int] = {}
    state = {"before": _snapshot(gw)}
    started = time.monotonic()

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(operations(), hostile(), forms()))
    def check(request):
        method, target = request[0], request[1]
        answer = _send(gw, *request)
        sent["requests"] += 1
        codes[answer.status, answer.code()] = codes.get((answer.status, answer.code()), 0) + 1
        assert answer.status != 0, f"no answer to {method} {target[:200]!r}: the gateway closed or hung"
        # 501 NotImplemented is S3's own answer for a feature a store does not have
        assert answer.status < 500 or (answer.status == 501 and (answer.code() == "NotImplemented"
                                                                   or method == "HEAD")), \
            (method, target[:200], answer.status, answer.body[:500])
        after = _snapshot(gw)
        sent["requests"] += len(after)
        if answer.status >= 400:
            sent["refused"] += 1
            assert after == state["before"], (f"refused {method} {target[:200]!r} ({answer.status} {answer.code()}) "
                                              "changed what is stored")
        else:
            sent["accepted"] += 1
        state["before"] = after

    check()
    seconds = time.monotonic() - started
    print(f"\nfuzz: {sent['requests']} requests in {seconds:.0f}s ({MAX_EXAMPLES} generated: "
          f"{sent['refused']} refused, {sent['accepted']} accepted; the rest checked state)")
    record_property("requests_sent", sent["requests"])
    print("answers:", ", ".join(f"{status} {code or '-'}: {n}" for (status, code), n in
                                sorted(codes.items(), key=lambda kv: -kv[1])))
    assert gw.procs["gateway"].poll() is None, "the gateway process died"
    rawhttp_ok = rawhttp.request(gw.endpoint, "GET", b"/_pocket/health")
    assert rawhttp_ok.status == 200
    log = gw.log("gateway")
    assert "Traceback" not in log and "failed (request" not in log, log[log.find("Traceback") - 2000:][:6000]
    assert sent["refused"] > MAX_EXAMPLES // 2   # it reached the checks, not only the front door
