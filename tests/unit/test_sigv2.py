"""SigV2 verification against botocore's own HmacV1 signers (header and presigned query)."""
import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from storage.s3 import errors, sigv2

CREDS = Credentials("AKIDEXAMPLE", "secret/with+chars")
SECRETS = {"AKIDEXAMPLE": "secret/with+chars"}.get


def _check(req: AWSRequest, **kw):
    parts = urlsplit(req.url)
    headers = CIMultiDict((k, v) for k, v in req.headers.items())
    assert sigv2.applies(headers, parts.query)
    return sigv2.authenticate(req.method, parts.path, parts.query, headers, SECRETS, **kw)


@pytest.mark.parametrize("url", [
    "http://h/bucket/key", "http://h/bucket/a%20b/%E6%97%A5%2B.txt", "http://h/bucket",
    "http://h/bucket/key?acl", "http://h/bucket/key?uploadId=abc&partNumber=3",
    "http://h/bucket/key?response-content-type=text%2Fplain&x-id=GetObject",
])
def test_header_auth_matches_botocore(url):
    req = AWSRequest("PUT", url, data=b"body", headers={"Content-Type": "text/plain", "x-amz-meta-a": " v "})
    HmacV1Auth(CREDS).add_auth(req)
    assert _check(req).access_key == "AKIDEXAMPLE"


def test_presigned_query_matches_botocore_and_expires():
    req = AWSRequest("GET", "http://h/bucket/k%20ey")
    HmacV1QueryAuth(CREDS, expires=60).add_auth(req)
    assert _check(req).presigned
    with pytest.raises(errors.AccessDenied):
        _check(req, now=time.time() + 120)


def test_tampering_and_unknown_keys_are_refused():
    req = AWSRequest("GET", "http://h/bucket/key")
    HmacV1Auth(CREDS).add_auth(req)
    req.url = "http://h/bucket/other"
    with pytest.raises(errors.SignatureDoesNotMatch):
        _check(req)
    bad = AWSRequest("GET", "http://h/bucket/key")
    HmacV1Auth(Credentials("NOBODY", "x")).add_auth(bad)
    with pytest.raises(errors.InvalidAccessKeyId):
        _check(bad)
