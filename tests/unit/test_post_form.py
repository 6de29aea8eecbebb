"""POST object's form reader and policy rules: pure functions, no cluster."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random

import pytest
from hypothesis import given, settings, strategies as st
from multidict import CIMultiDict

from storage.s3 import errors, form, post_policy

BOUNDARY = b"----WebKitFormBoundaryAbC123xyz"


def _body(fields: list[tuple[str, str]], data: bytes, filename: str = "f.bin", close: bool = True) -> bytes:
    out = b"".join(b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + k.encode() + b'"\r\n\r\n'
                   + v.encode() + b"\r\n" for k, v in fields)
    out += (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename.encode()
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + data)
    return out + (b"\r\n--" + BOUNDARY + b"--\r\n" if close else b"")


async def _chunks(data: bytes, sizes):
    i = 0
    while i < len(data):
        n = next(sizes)
        yield data[i:i + n]
        i += n


def _read(body: bytes, sizes) -> tuple[form.Form, bytes]:
    async def run():
        sent = await form.read_form(_chunks(body, sizes), BOUNDARY)
        data = b"".join([piece async for piece in sent.file]) if sent.file else b""
        return sent, data
    return asyncio.run(run())


@pytest.mark.parametrize("seed", range(20))
def test_file_bytes_come_out_exact_whatever_the_read_sizes(seed):
    rnd = random.Random(seed)
    data = rnd.randbytes(rnd.randrange(0, 200_000))
    if rnd.random() < 0.3:   # bytes that look like the start of a delimiter inside the file
        data += b"\r\n--" + BOUNDARY[:-1] + rnd.randbytes(10)
    fields = [("key", "uploads/${filename}"), ("x-amz-meta-note", "h\u00e9"), ("Content-Type", "a/b")]
    sizes = iter(lambda: rnd.choice([1, 2, 7, 64, 4096, 70_000]), None)
    sent, got = _read(_body(fields, data, "my photo.jpg"), sizes)
    assert got == data
    assert list(sent.fields.items()) == fields
    assert sent.filename == "my photo.jpg" and sent.file_type == "application/octet-stream"


def test_a_truncated_file_is_incomplete_not_stored_short():
    with pytest.raises(errors.IncompleteBody):
        _read(_body([("key", "k")], b"x" * 5000, close=False), iter(lambda: 1000, None))


def test_fields_before_the_file_are_bounded():
    with pytest.raises(errors.MaxPostPreDataLengthExceededError):
        _read(_body([("x-ignore-pad", "p" * (form.MAX_FIELDS_BYTES + 1))], b"x"), iter(lambda: 4096, None))


def test_a_form_without_a_file():
    body = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="key"\r\n\r\nk\r\n--' + BOUNDARY + b"--\r\n"
    sent, _ = _read(body, iter(lambda: 3, None))
    assert sent.file is None and sent.fields["key"] == "k"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data",
                                          "multipart/form-data; boundary=", "text/plain; boundary=x"])
def test_not_a_multipart_form(content_type):
    with pytest.raises(errors.MalformedPOSTRequest):
        form.boundary_of(content_type)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 50))
def test_any_bytes_are_read_or_refused_with_an_s3_error(garbage, step):
    body = b"--" + BOUNDARY + b"\r\n" + garbage
    try:
        _read(body, iter(lambda: step, None))
    except errors.S3Error as e:
        assert e.status == 400


# --- the policy ----------------------------------------------------------------------------

SECRET = "s3cr3t"


def _signed_v2(document: dict, **fields: str) -> CIMultiDict:
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    return CIMultiDict({**fields, "AWSAccessKeyId": "AK", "policy": policy, "signature": signature})


def _judge(conditions: list, now: float = 1_000_000.0, expiration: str = "2001-01-01T00:00:00.000Z", **fields):
    sent = _signed_v2({"expiration": expiration, "conditions": conditions}, **fields)
    signed = post_policy.verify(sent, lambda key: SECRET if key == "AK" else None)
    return post_policy.check(sent, "bkt", signed, now=now)


def test_conditions_that_hold():
    signed = _judge([{"bucket": "bkt"}, ["starts-with", "$key", "up/"], ["eq", "$acl", "private"],
                     ["starts-with", "$Content-Type", "image/"], ["content-length-range", 10, "2000"],
                     {"success_action_status": "201"}],
                    key="up/x", acl="private", **{"Content-Type": "image/png, image/gif"},
                    success_action_status="201", **{"x-ignore-me": "1"})
    assert (signed.access_key, signed.min_size, signed.max_size) == ("AK", 10, 2000)


@pytest.mark.parametrize("conditions, fields, message", [
    ([{"bucket": "other"}], {}, 'Policy Condition failed: {"bucket": "other"}'),
    ([["starts-with", "$key", "up/"]], {"key": "down/x"}, 'Policy Condition failed: ["starts-with", "$key", "up/"]'),
    ([["eq", "$acl", "private"]], {}, 'Policy Condition failed: ["eq", "$acl", "private"]'),
    ([["starts-with", "$Content-Type", "image/"]], {"Content-Type": "image/png, text/html"},
     'Policy Condition failed: ["starts-with", "$Content-Type", "image/"]'),
    ([], {"key": "k"}, "Extra input fields: key"),
])
def test_conditions_that_fail(conditions, fields, message):
    with pytest.raises(errors.AccessDenied) as e:
        _judge(conditions, **fields)
    assert e.value.text == f"Invalid according to Policy: {message}"


def test_expired_policy():
    with pytest.raises(errors.AccessDenied) as e:
        _judge([], now=1_000_000_000.0)
    assert e.value.text == "Invalid according to Policy: Policy expired."


@pytest.mark.parametrize("document", [{"conditions": []}, {"expiration": "tomorrow", "conditions": []},
                                      {"expiration": "2001-01-01T00:00:00Z", "conditions": [["gt", "$k", "1"]]},
                                      {"expiration": "2001-01-01T00:00:00Z", "conditions": [["content-length-range",
                                                                                              5, 1]]},
                                      {"expiration": "2001-01-01T00:00:00Z", "conditions": [["content-length-range",
                                                                                              0, "\u0663"]]},
                                      {"expiration": "2001-01-01T00:00:00Z", "conditions": [["content-length-range",
                                                                                              0, "9" * 40]]},
                                      {"expiration": "2001-01-01T00:00:00Z"}])
def test_malformed_policies(document):
    sent = _signed_v2(document)
    signed = post_policy.verify(sent, lambda key: SECRET)
    with pytest.raises(errors.InvalidPolicyDocument):
        post_policy.check(sent, "bkt", signed, now=0)


def test_signatures():
    sent = _signed_v2({"expiration": "2001-01-01T00:00:00Z", "conditions": []})
    sent["signature"] = base64.b64encode(b"\0" * 20).decode()
    with pytest.raises(errors.SignatureDoesNotMatch):
        post_policy.verify(sent, lambda key: SECRET)
    with pytest.raises(errors.InvalidAccessKeyId):
        post_policy.verify(sent, lambda key: None)
    assert post_policy.verify(CIMultiDict(key="k"), lambda key: SECRET).access_key is None   # anonymous
    with pytest.raises(errors.InvalidArgument):   # a policy nobody signed
        post_policy.verify(CIMultiDict(key="k", policy="e30="), lambda key: SECRET)
