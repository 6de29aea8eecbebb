"""The copy's own SigV4 presigned GET URLs are accepted by a SigV4 verifier (Pocket's own,
storage/s3/sigv4.py) and name the same object, with the same parameters, as botocore's."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config

from storage.migrate.presign import CannotSign, Presigner
from storage.s3 import errors
from storage.s3.sigv4 import authenticate

KEYS = ["plain", "dir/sub/file.txt", "a b+c%d~e", "ünïcödé/ключ", "double//slash/./dot", "semi;colon=eq&amp?q#h"]
HEADERS = {"if-match": '"0123456789abcdef0123456789abcdef"', "x-amz-checksum-mode": "ENABLED"}


def _client(endpoint: str | None, style: str = "path", token: str | None = "SESSION+TOKEN/="):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="AKIDEXAMPLE",
                        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", aws_session_token=token,
                        region_name="eu-central-1",
                        config=Config(signature_version="s3v4", s3={"addressing_style": style}))


def _verify(url: str, headers: dict[str, str], now: float):
    parts = urlsplit(url)
    sent = {"host": parts.netloc, **headers}
    return authenticate("GET", parts.path, parts.query, sent,
                        lambda ak: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" if ak == "AKIDEXAMPLE" else None, now=now)


@pytest.mark.parametrize("endpoint,style", [("http://127.0.0.1:9000", "path"), ("https://s3.example.net", "path"),
                                            (None, "virtual"), (None, "path")])
def test_presigned_urls_verify_and_match_botocore(endpoint, style):
    client = _client(endpoint, style)
    signer = Presigner(client)
    now = time.time()
    for key in KEYS:
        for version in (None, "3/L4kqtJl+cd=="):
            url = signer.get_url("my-bucket", key, version, HEADERS, 900)
            auth = _verify(url, HEADERS, now)
            assert auth is not None and auth.presigned and auth.scope.endswith("/eu-central-1/s3/aws4_request")
            theirs = client.generate_presigned_url("get_object", ExpiresIn=900, Params={
                "Bucket": "my-bucket", "Key": key, "IfMatch": HEADERS["if-match"], "ChecksumMode": "ENABLED",
                **({"VersionId": version} if version else {})})
            ours_q, theirs_q = parse_qs(urlsplit(url).query), parse_qs(urlsplit(theirs).query)
            for varying in ("X-Amz-Date", "X-Amz-Signature", "X-Amz-Credential"):
                ours_q.pop(varying), theirs_q.pop(varying)
            assert ours_q == theirs_q
            assert urlsplit(url)[:3] == urlsplit(theirs)[:3]


def test_a_changed_header_or_key_is_refused():
    client = _client("http://127.0.0.1:9000")
    url = Presigner(client).get_url("b", "k", None, HEADERS, 900)
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify(url, {**HEADERS, "if-match": '"ffffffffffffffffffffffffffffffff"'}, time.time())
    with pytest.raises(errors.SignatureDoesNotMatch):
        _verify(url.replace("/b/k?", "/b/j?"), HEADERS, time.time())


def test_no_token_no_token_parameter_and_anonymous_clients_are_left_to_botocore():
    url = Presigner(_client("http://127.0.0.1:9000", token=None)).get_url("b", "k", None, HEADERS, 900)
    assert "X-Amz-Security-Token" not in url
    assert _verify(url, HEADERS, time.time()) is not None
    from botocore import UNSIGNED
    anonymous = boto3.client("s3", endpoint_url="http://127.0.0.1:9000", region_name="us-east-1",
                             config=Config(signature_version=UNSIGNED))
    with pytest.raises(CannotSign):
        Presigner(anonymous).get_url("b", "k", None, HEADERS, 900)


def test_a_part_head_signs_its_part_number_as_botocore_does():
    """copier.head_of asks each part's length by presigned HEAD ?partNumber=N: the number
    is signed (another part's number is refused) and the query is botocore's."""
    client = _client("http://127.0.0.1:9000")
    head = {"x-amz-checksum-mode": "ENABLED"}
    url = Presigner(client).get_url("b", "big/odd.bin", "v1", head, 900, method="HEAD", part_number=3)
    parts = urlsplit(url)
    secret = lambda ak: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # noqa: E731
    assert authenticate("HEAD", parts.path, parts.query, {"host": parts.netloc, **head}, secret, now=time.time())
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate("HEAD", parts.path, parts.query.replace("partNumber=3", "partNumber=2"),
                     {"host": parts.netloc, **head}, secret, now=time.time())
    theirs = client.generate_presigned_url("head_object", ExpiresIn=900, Params={
        "Bucket": "b", "Key": "big/odd.bin", "VersionId": "v1", "PartNumber": 3, "ChecksumMode": "ENABLED"})
    ours_q, theirs_q = parse_qs(parts.query), parse_qs(urlsplit(theirs).query)
    for varying in ("X-Amz-Date", "X-Amz-Signature", "X-Amz-Credential"):
        ours_q.pop(varying), theirs_q.pop(varying)
    assert ours_q == theirs_q and ours_q["partNumber"] == ["3"]


def test_a_bucket_url_signs_its_listing_query():
    """list_http.py lists by presigned URL: the bucket's own path, every query parameter
    signed (a changed marker or prefix is refused)."""
    url = Presigner(_client("http://127.0.0.1:9000")).bucket_url(
        "b", {"list-type": "2", "prefix": "dir/ü +%", "continuation-token": "a/b+c=", "encoding-type": "url"}, 900)
    parts = urlsplit(url)
    assert parts.path == "/b"
    assert parse_qs(parts.query)["prefix"] == ["dir/ü +%"]
    secret = lambda ak: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # noqa: E731
    assert authenticate("GET", parts.path, parts.query, {"host": parts.netloc}, secret, now=time.time())
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate("GET", parts.path, parts.query.replace("prefix=dir", "prefix=dix"), {"host": parts.netloc},
                     secret, now=time.time())
