"""CORS rule parsing and matching, and canned-ACL parsing: pure rules, no cluster."""
from __future__ import annotations

import pytest
from multidict import CIMultiDict

from storage.config import Credential
from storage.objects.buckets import apply_config
from storage.s3 import acl, cors, errors


def _config(*rules: str) -> bytes:
    return ("<CORSConfiguration xmlns='http://s3.amazonaws.com/doc/2006-03-01/'>" + "".join(
        f"<CORSRule>{r}</CORSRule>" for r in rules) + "</CORSConfiguration>").encode()


RULES = cors.parse(_config(
    "<AllowedOrigin>https://app.example</AllowedOrigin><AllowedMethod>PUT</AllowedMethod>"
    "<AllowedHeader>Content-*</AllowedHeader><AllowedHeader>x-amz-meta-album</AllowedHeader>",
    "<AllowedOrigin>https://*.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
    "<MaxAgeSeconds>60</MaxAgeSeconds>",
    "<AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod><AllowedHeader>*</AllowedHeader>"))


@pytest.mark.parametrize("origin, method, headers, rule", [
    ("https://app.example", "PUT", [], 0),
    ("https://app.example", "PUT", ["content-type", "x-amz-meta-album"], 0),
    ("https://app.example", "PUT", ["CONTENT-MD5"], 0),          # header patterns ignore case
    ("https://app.example", "PUT", ["x-amz-meta-other"], None),
    ("https://app.example", "GET", [], 1),                        # first rule allowing the method
    ("https://eu.cdn.example", "GET", [], 1),
    ("https://evil.com", "GET", [], None),
    ("https://app.example.evil.com", "PUT", [], None),            # origins match whole
    ("null", "HEAD", ["anything"], 2),
    ("https://app.example", "DELETE", [], None),
])
def test_match(origin, method, headers, rule):
    got = cors.match(RULES, origin, method, headers)
    assert got is (None if rule is None else RULES[rule])


@pytest.mark.parametrize("body, error", [
    (b"", errors.MalformedXML),
    (b"<CORSConfiguration/>", errors.MalformedXML),
    (b"<Nope/>", errors.MalformedXML),
    (_config("<AllowedMethod>GET</AllowedMethod>"), errors.MalformedXML),
    (_config("<AllowedOrigin>*</AllowedOrigin>"), errors.MalformedXML),
    (_config("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>get</AllowedMethod>"), errors.InvalidRequest),
    (_config("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><Colour/>"), errors.MalformedXML),
    (_config("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
             "<MaxAgeSeconds>soon</MaxAgeSeconds>"), errors.MalformedXML),
    (_config(*["<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"] * 101), errors.MalformedXML),
])
def test_bad_configurations(body, error):
    with pytest.raises(error):
        cors.parse(body)


def test_a_hundred_rules_are_fine():
    assert len(cors.parse(_config(*["<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"] * 100))) \
        == 100


@pytest.mark.parametrize("headers, expected", [
    ({}, "private"),
    ({"x-amz-acl": "public-read"}, "public-read"),
    ({"x-amz-acl": "bucket-owner-full-control"}, "bucket-owner-full-control"),
    ({"x-amz-acl": "public-read-write"}, "public-read-write"),
    ({"x-amz-acl": "nonsense"}, errors.InvalidArgument),
    ({"x-amz-grant-read": 'id="x", uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
     [["id", "x", "READ"], ["group", "http://acs.amazonaws.com/groups/global/AllUsers", "READ"]]),
    ({"x-amz-grant-read": 'uri="http://example.com/not-a-group"'}, errors.InvalidArgument),
    ({"x-amz-grant-read": 'emailAddress="nobody@example.com"'}, errors.UnresolvableGrantByEmailAddress),
    ({"x-amz-acl": "private", "x-amz-grant-read": 'id="x"'}, errors.InvalidRequest),
])
def test_canned_acl_headers(headers, expected):
    users = [Credential("x", "secret-of-x")]   # a canonical id must name a user
    if isinstance(expected, (str, list)):
        assert acl.from_headers(CIMultiDict(headers), users) == expected
    else:
        with pytest.raises(expected):
            acl.from_headers(CIMultiDict(headers), users)


def test_a_grant_to_an_id_no_user_has_is_invalid():
    with pytest.raises(errors.InvalidArgument, match="Invalid id"):
        acl.from_headers(CIMultiDict({"x-amz-grant-read": 'id="nobody"'}), [Credential("x", "secret-of-x")])


def test_bucket_config_changes_merge_and_remove():
    record = {"name": "b", "owner": "o", "cors": [1]}
    assert apply_config(record, {"acl": "public-read", "cors": None}) == {"name": "b", "owner": "o",
                                                                          "acl": "public-read"}
