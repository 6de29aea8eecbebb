"""SigV4 verification against botocore's real signer and AWS's published examples.

botocore is the reference because it is what most clients of the gateway run;
the AWS documentation vectors pin the parts botocore cannot exercise
(aws-chunked chunk and trailer signatures).
"""
from __future__ import annotations

import calendar
import datetime
import hashlib
import time
from unittest import mock
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials
from botocore.utils import percent_encode_sequence
from multidict import CIMultiDict

from storage.s3 import errors
from storage.s3.sigv4 import (
    EMPTY_SHA256,
    AuthResult,
    Credentials,
    authenticate,
    expected_trailer_signature,
    verify_chunk_signature,
)

AK, SK = "AKIDPOCKETTEST", "pocket/secret+key=="
SECRETS = {AK: SK}
HOST = "s3.pocket.test:9000"


def _request(method, key, params=None, headers=None, body=b"", scheme="http"):
    """Build a request URL the way botocore's serializer does before signing."""
    url = f"{scheme}://{HOST}/bucket/{quote(key, safe='/~')}"
    if params:
        url += "?" + percent_encode_sequence(params)
    return AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)


def _wire(request):
    """What aiohttp would hand the gateway: method, raw path, raw query, headers."""
    parts = urlsplit(request.url)
    headers = CIMultiDict()
    for name, value in request.headers.items():
        headers.add(name, value)
    headers.setdefault("Host", parts.netloc)
    return request.method, parts.path, parts.query, headers


def sign(method="GET", key="obj", params=None, headers=None, body=b"", scheme="http",
         region="us-east-1", creds=(AK, SK), unsigned=False):
    request = _request(method, key, params, headers, body, scheme)
    if unsigned:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(BotoCredentials(*creds), "s3", region).add_auth(request)
    return _wire(request)


def presign(method="GET", key="obj", params=None, headers=None, expires=3600, region="us-east-1"):
    request = _request(method, key, None, headers)
    request.params = dict(params or {})
    S3SigV4QueryAuth(BotoCredentials(AK, SK), "s3", region, expires=expires).add_auth(request)
    return _wire(request)


def auth(method, path, query, headers, **kw):
    return authenticate(method, path, query, headers, SECRETS.get, **kw)


KEYS = [
    "plain.txt",
    "with space and  two.txt",
    "a+b+c.txt",
    "100%25 %.txt",
    "caf\u00e9/\u65e5\u672c\u8a9e.txt",
    "a=b&c=d?e#f.txt",
    "dir//double/./dot/../x",
    "tilde~star*bang!paren().txt",
    "/leading-slash",
]


# --- success paths -------------------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_header_auth_signed_payload(key, method):
    body = b"hello world" if method == "PUT" else b""
    result = auth(*sign(method, key, body=body))
    assert isinstance(result, AuthResult)
    assert result.access_key == AK
    assert result.payload_hash == hashlib.sha256(body).hexdigest()
    assert result.presigned is False
    assert result.scope.endswith("/us-east-1/s3/aws4_request")


@pytest.mark.parametrize("key", KEYS)
def test_header_auth_unsigned_payload(key):
    result = auth(*sign("PUT", key, body=b"x" * 100, scheme="https", unsigned=True))
    assert result.payload_hash == "UNSIGNED-PAYLOAD"


def test_raw_path_keeps_double_slash_and_dot_segments():
    method, path, query, headers = sign("GET", "a//b/./c/../d")
    assert "//" in path and "/./" in path and "/../" in path
    assert auth(method, path, query, headers)


@pytest.mark.parametrize("params", [
    {"list-type": "2", "prefix": "caf\u00e9 \u65e5\u672c/+%&=", "delimiter": "/", "max-keys": "10"},
    {"uploads": ""},
    {"response-content-disposition": 'attachment; filename="a b=c&d.txt"', "versionId": "v+1/2"},
    [("v", "a/"), ("v", "a-"), ("a/", "1"), ("a-", "2"), ("\u00e9", "3"), ("z", "4")],
])
def test_header_auth_query_strings(params):
    assert auth(*sign("GET", "k", params=params))


def test_bare_subresource_without_equals():
    """Clients send '?acl' / '?uploads' without '='; it canonicalises as 'acl='."""
    method, path, _query, headers = sign("GET", "k", params={"acl": ""})
    assert auth(method, path, "acl", headers)


def test_literal_plus_in_query_is_a_plus_not_a_space():
    """SigV4 decodes with unquote, not unquote_plus: a raw '+' means '%2B'."""
    method, path, query, headers = sign("GET", "k", params={"prefix": "a+b"})
    assert query == "prefix=a%2Bb"
    assert auth(method, path, "prefix=a+b", headers)
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(method, path, "prefix=a%20b", headers)


def test_any_region_and_header_whitespace_and_repeats():
    request = _request("PUT", "k", headers={"x-amz-meta-note": "  lots    of   space  "})
    request.headers["x-amz-meta-multi"] = "one"
    request.headers["x-amz-meta-multi"] = "two"  # email.message semantics: a second value
    S3SigV4Auth(BotoCredentials(AK, SK), "s3", "garage-west").add_auth(request)
    result = auth(*_wire(request))
    assert result.scope.split("/")[1] == "garage-west"


def test_authorization_header_spacing_is_flexible():
    method, path, query, headers = sign("GET", "k")
    squeezed = headers["Authorization"].replace(", ", ",")
    headers["Authorization"] = squeezed
    assert auth(method, path, query, headers)
    headers["Authorization"] = squeezed.replace(",", " ,  ") + "  "
    assert auth(method, path, query, headers)


def test_date_header_instead_of_x_amz_date():
    method, path, query, headers = sign("GET", "k", headers={"Date": "placeholder"})
    assert "x-amz-date" not in headers
    assert auth(method, path, query, headers).amz_date.endswith("Z")


@pytest.mark.parametrize("key", KEYS)
def test_presigned(key):
    params = {"response-content-type": "text/plain; charset=utf-8", "x-id": "a=b&c"}
    result = auth(*presign("GET", key, params=params))
    assert result.presigned is True
    assert result.payload_hash == "UNSIGNED-PAYLOAD"


def test_presigned_with_signed_content_sha256_header():
    digest = hashlib.sha256(b"body").hexdigest()
    result = auth(*presign("PUT", "k", headers={"X-Amz-Content-SHA256": digest}))
    assert result.payload_hash == digest


def test_signing_key_is_cached_and_reused():
    first = auth(*sign("GET", "k"))
    second = auth(*sign("GET", "other"))
    assert first.signing_key is second.signing_key


def test_raw_non_utf8_bytes_in_path_do_not_crash():
    """aiohttp hands over undecodable bytes as surrogates; they must re-encode, not raise."""
    method, path, query, headers = sign("GET", "k")
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        auth(method, path + "\udcff", query + "&x=\udcfe", headers)
    assert "/bucket/k%FF" in info.value.extra["CanonicalRequest"]
    assert "x=%FE" in info.value.extra["CanonicalRequest"]


def test_credentials_repr_hides_secret():
    assert SK not in repr(Credentials(AK, SK))


# --- failures -------------------------------------------------------------------------------

def test_anonymous_returns_none():
    assert auth("GET", "/bucket/k", "", CIMultiDict({"Host": HOST})) is None
    assert auth("GET", "/bucket/k", "list-type=2&prefix=a", CIMultiDict({"Host": HOST})) is None


def test_tampered_signature():
    method, path, query, headers = sign("GET", "k")
    value = headers["Authorization"]
    flipped = "0" if value[-1] != "0" else "1"
    headers["Authorization"] = value[:-1] + flipped
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        auth(method, path, query, headers)
    assert info.value.status == 403 and "CanonicalRequest" in info.value.extra


@pytest.mark.parametrize("tamper", ["path", "query", "header", "payload", "method"])
def test_tampered_request_parts(tamper):
    method, path, query, headers = sign("PUT", "k", params={"a": "1"},
                                        headers={"x-amz-meta-a": "v"}, body=b"data")
    if tamper == "path":
        path += "x"
    elif tamper == "query":
        query = query.replace("a=1", "a=2")
    elif tamper == "header":
        headers["x-amz-meta-a"] = "w"
    elif tamper == "payload":
        headers["x-amz-content-sha256"] = hashlib.sha256(b"other").hexdigest()
    else:
        method = "POST"
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(method, path, query, headers)


def test_wrong_secret():
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(*sign("GET", "k", creds=(AK, "not-the-secret")))


def test_cached_keys_serve_only_their_secret_date_and_region():
    """The signing key and the parsed date are cached between requests: a request signed
    with a wrong secret, another day or another region after a good one must still fail."""
    assert auth(*sign("GET", "k")).access_key == AK
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(*sign("GET", "k", creds=(AK, "not-the-secret")))
    assert auth(*sign("GET", "k")).access_key == AK
    method, path, query, headers = sign("GET", "k", region="eu-west-1")
    assert auth(method, path, query, headers).scope.split("/")[1] == "eu-west-1"
    headers["Authorization"] = headers["Authorization"].replace("/eu-west-1/", "/us-east-1/")
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(method, path, query, headers)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
    yesterday = now - datetime.timedelta(days=1)
    with mock.patch("botocore.auth.get_current_datetime", return_value=yesterday):
        method, path, query, headers = sign("GET", "k")
    assert auth(method, path, query, headers, now=calendar.timegm(yesterday.timetuple()))
    day, today = yesterday.strftime("%Y%m%d"), now.strftime("%Y%m%d")
    headers["X-Amz-Date"] = now.strftime("%Y%m%dT%H%M%SZ")   # yesterday's signature, moved to today
    headers["Authorization"] = headers["Authorization"].replace(f"/{day}/", f"/{today}/")
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(method, path, query, headers, now=calendar.timegm(now.timetuple()))
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(*sign("GET", "k", creds=(AK, SK + "x")))


def test_unknown_access_key():
    with pytest.raises(errors.InvalidAccessKeyId) as info:
        auth(*sign("GET", "k", creds=("AKIDUNKNOWN", SK)))
    assert info.value.extra["AWSAccessKeyId"] == "AKIDUNKNOWN"


@pytest.mark.parametrize("offset", [-20, 20])
def test_skewed_clock(offset):
    skewed = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) \
        + datetime.timedelta(minutes=offset)
    with mock.patch("botocore.auth.get_current_datetime", return_value=skewed):
        request = sign("GET", "k")
    with pytest.raises(errors.RequestTimeTooSkewed):
        auth(*request)
    assert auth(*request, max_skew=25 * 60)  # the same request is fine with a looser bound


def test_presigned_expired():
    request = presign("GET", "k", expires=60)
    assert auth(*request, now=time.time() + 30)
    with pytest.raises(errors.AccessDenied, match="Request has expired"):
        auth(*request, now=time.time() + 120)


def test_presigned_dated_in_the_future():
    future = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) \
        + datetime.timedelta(minutes=20)
    with mock.patch("botocore.auth.get_current_datetime", return_value=future):
        request = presign("GET", "k")
    with pytest.raises(errors.RequestTimeTooSkewed):
        auth(*request)


@pytest.mark.parametrize("expires", [604801, 10**12, "abc", -5, "%C2%B2", "1e3"])
def test_presigned_expires_out_of_range(expires):
    method, path, query, headers = presign("GET", "k", expires=3600)
    query = query.replace("X-Amz-Expires=3600", f"X-Amz-Expires={expires}")
    with pytest.raises(errors.AuthorizationQueryParametersError) as e:
        auth(method, path, query, headers)
    assert e.value.status == 400


def test_presigned_expires_zero_has_already_expired():
    method, path, query, headers = presign("GET", "k", expires=3600)
    with pytest.raises(errors.AccessDenied, match="Request has expired"):
        auth(method, path, query.replace("X-Amz-Expires=3600", "X-Amz-Expires=0"), headers)


def test_presigned_tampered_query_param():
    method, path, query, headers = presign("GET", "k", params={"response-content-type": "a/b"})
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(method, path, query.replace("a%2Fb", "a%2Fc"), headers)
    with pytest.raises(errors.SignatureDoesNotMatch):
        auth(method, path, query + "&extra=1", headers)
    with pytest.raises(errors.SignatureDoesNotMatch):  # stretching the expiry is tampering too
        auth(method, path, query.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200"), headers)


def test_presigned_missing_parameter():
    method, path, query, headers = presign("GET", "k")
    stripped = "&".join(p for p in query.split("&") if not p.startswith("X-Amz-Credential="))
    with pytest.raises(errors.InvalidArgument):
        auth(method, path, stripped, headers)


def test_both_mechanisms_rejected():
    method, path, query, headers = presign("GET", "k")
    headers["Authorization"] = sign("GET", "k")[3]["Authorization"]
    with pytest.raises(errors.InvalidArgument):
        auth(method, path, query, headers)


def test_sigv2_header_and_query():
    headers = CIMultiDict({"Host": HOST, "Authorization": "AWS AKIDPOCKETTEST:c2lnbmF0dXJl"})
    with pytest.raises(errors.InvalidRequest, match="Signature Version 2 request"):
        auth("GET", "/bucket/k", "", headers)
    query = "AWSAccessKeyId=AKIDPOCKETTEST&Expires=1700000000&Signature=abc%3D"
    with pytest.raises(errors.InvalidRequest, match="Signature Version 2 request"):
        auth("GET", "/bucket/k", query, CIMultiDict({"Host": HOST}))


@pytest.mark.parametrize("value", [
    "garbage",
    "Bearer abc.def",
    "AWS4-HMAC-SHA256",
    "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host",
    "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request SignedHeaders=host "
    "Signature=00",
])
def test_malformed_authorization(value):
    method, path, query, headers = sign("GET", "k")
    headers["Authorization"] = value
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        auth(method, path, query, headers)


@pytest.mark.parametrize("credential", [
    "AKIDPOCKETTEST/20260101/us-east-1/s3",              # too few parts
    "AKIDPOCKETTEST/20260101/us-east-1/ec2/aws4_request",  # wrong service
    "AKIDPOCKETTEST/20260101/us-east-1/s3/aws5_request",   # wrong terminator
    "AKIDPOCKETTEST/19990101/us-east-1/s3/aws4_request",   # date differs from x-amz-date
])
def test_malformed_credential(credential):
    method, path, query, headers = sign("GET", "k")
    value = headers["Authorization"]
    start = value.index("Credential=") + len("Credential=")
    headers["Authorization"] = value[:start] + credential + value[value.index(","):]
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        auth(method, path, query, headers)


def test_sigv4a_is_unsupported_not_malformed():
    method, path, query, headers = sign("GET", "k")
    headers["Authorization"] = headers["Authorization"].replace("AWS4-HMAC-SHA256",
                                                                "AWS4-ECDSA-P256-SHA256")
    with pytest.raises(errors.InvalidArgument):
        auth(method, path, query, headers)


def test_missing_content_sha256():
    method, path, query, headers = sign("GET", "k")
    del headers["x-amz-content-sha256"]
    with pytest.raises(errors.InvalidRequest, match="x-amz-content-sha256"):
        auth(method, path, query, headers)


def test_bogus_content_sha256():
    method, path, query, headers = sign("GET", "k")
    headers["x-amz-content-sha256"] = "not-a-hash"
    with pytest.raises(errors.InvalidArgument):
        auth(method, path, query, headers)


def test_missing_or_bad_date():
    method, path, query, headers = sign("GET", "k")
    headers["x-amz-date"] = "yesterday"
    with pytest.raises(errors.AccessDenied):
        auth(method, path, query, headers)
    del headers["x-amz-date"]
    with pytest.raises(errors.AccessDenied):
        auth(method, path, query, headers)


def test_host_must_be_signed():
    method, path, query, headers = sign("GET", "k")
    headers["Authorization"] = headers["Authorization"].replace("SignedHeaders=host;",
                                                                "SignedHeaders=")
    with pytest.raises(errors.AccessDenied):
        auth(method, path, query, headers)


@pytest.mark.parametrize("signer", [sign, presign])
def test_unsigned_amz_headers_are_refused(signer):
    method, path, query, headers = signer("PUT", "k")
    headers.add("x-amz-copy-source", "/other/secret")
    headers.add("X-Amz-Acl", "public-read")
    with pytest.raises(errors.AccessDenied) as e:
        auth(method, path, query, headers)
    assert e.value.extra == {"HeadersNotSigned": "x-amz-acl, x-amz-copy-source"}


def test_headers_s3_lets_through_unsigned():
    method, path, query, headers = presign("PUT", "k")
    headers.add("x-amz-content-sha256", "UNSIGNED-PAYLOAD")   # S3's one exception
    headers.add("X-Amzn-Trace-Id", "Root=1-abc")               # not an x-amz-* header
    headers.add("Content-Type", "image/jpeg")
    assert auth(method, path, query, headers).presigned


def test_signed_amz_headers_pass():
    signed = {"x-amz-acl": "public-read", "x-amz-meta-a": "1", "x-amz-tagging": "a=b"}
    assert auth(*sign("PUT", "k", headers=signed)).access_key == AK
    assert auth(*presign("PUT", "k", headers=signed)).presigned


# --- AWS documentation vectors (sig-v4-header-based-auth, sigv4-streaming, -trailers) -------

DOC_KEY, DOC_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_NOW = calendar.timegm((2013, 5, 24, 0, 0, 0))
DOC_CRED = f"Credential={DOC_KEY}/20130524/us-east-1/s3/aws4_request"


def _doc_auth(method, path, headers, signed, signature):
    headers = CIMultiDict(headers, **{"x-amz-date": "20130524T000000Z", "Authorization": (
        f"AWS4-HMAC-SHA256 {DOC_CRED},SignedHeaders={signed},Signature={signature}")})
    return authenticate(method, path, "", headers, {DOC_KEY: DOC_SECRET}.get, now=DOC_NOW)


def test_aws_doc_get_object():
    result = _doc_auth("GET", "/test.txt",
                       {"Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9",
                        "x-amz-content-sha256": EMPTY_SHA256},
                       "host;range;x-amz-content-sha256;x-amz-date",
                       "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert result.payload_hash == EMPTY_SHA256


CHUNKED = {"Host": "s3.amazonaws.com", "x-amz-storage-class": "REDUCED_REDUNDANCY",
           "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "66560"}


def _chain(result, chunks):
    signatures, previous = [], result.seed_signature
    for data in chunks:
        previous = verify_chunk_signature(result, previous, hashlib.sha256(data).hexdigest())
        signatures.append(previous)
    return signatures


def test_aws_doc_streaming_chunks():
    result = _doc_auth("PUT", "/examplebucket/chunkObject.txt",
                       dict(CHUNKED, **{"Content-Length": "66824",
                                        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}),
                       "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                       "x-amz-decoded-content-length;x-amz-storage-class",
                       "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")
    assert result.payload_hash == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert _chain(result, [b"a" * 65536, b"a" * 1024, b""]) == [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]


def test_aws_doc_streaming_trailer():
    result = _doc_auth("PUT", "/examplebucket/chunkObject.txt",
                       dict(CHUNKED, **{"x-amz-trailer": "x-amz-checksum-crc32c",
                                        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"}),
                       "content-encoding;host;x-amz-content-sha256;x-amz-date;"
                       "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
                       "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e")
    signatures = _chain(result, [b"a" * 65536, b"a" * 1024, b""])
    assert signatures == [
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ]
    trailer = [("x-amz-checksum-crc32c", "sOO8/Q==")]
    expected = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
    assert expected_trailer_signature(result, signatures[-1], trailer) == expected
    # The signature line itself, if passed along, is not part of what was signed.
    with_sig = trailer + [("x-amz-trailer-signature", expected)]
    assert expected_trailer_signature(result, signatures[-1], with_sig) == expected
