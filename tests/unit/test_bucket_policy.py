"""The policy language: what PutBucketPolicy refuses, and how statements decide a request."""
from __future__ import annotations

import json

import pytest

from storage.s3.policy import conditions, document

BUCKET = "photos"
ALICE, BOB = "PKALICE0000000000001", "PKBOB00000000000002"


def _policy(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _decide(policy: str, caller, action, resource, **context):
    return document.evaluate(document.parse(policy, BUCKET), caller, action, resource, context)


PUBLIC_READ = {"Sid": "pub", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
               "Resource": f"arn:aws:s3:::{BUCKET}/public/*"}


@pytest.mark.parametrize("policy, why", [
    ("not json", "valid JSON"),
    ("[]", "first byte"),
    (json.dumps({"Version": "2012-10-17"}), "Statement"),
    (_policy({**PUBLIC_READ, "Effect": "Maybe"}), "Effect"),
    (_policy({k: v for k, v in PUBLIC_READ.items() if k != "Principal"}), "Principal"),
    (_policy({k: v for k, v in PUBLIC_READ.items() if k != "Action"}), "Action"),
    (_policy({**PUBLIC_READ, "Action": "ec2:RunInstances"}), "action"),
    (_policy({**PUBLIC_READ, "Resource": "arn:aws:s3:::other-bucket/*"}), "resource"),
    (_policy({**PUBLIC_READ, "Condition": {"StringSortOf": {"s3:prefix": "a"}}}), "operator"),
    (_policy({**PUBLIC_READ, "Condition": {"IpAddress": {"aws:SourceIp": "not-an-ip"}}}), "valid value"),
    (json.dumps({"Version": "2099-01-01", "Statement": [PUBLIC_READ]}), "version"),
    (_policy({**PUBLIC_READ, "Colour": "blue"}), "Unknown field"),
])
def test_malformed_policies_are_refused_with_the_reason(policy, why):
    with pytest.raises(document.MalformedPolicy, match=why):
        document.parse(policy, BUCKET)


def test_principals_actions_and_resources_match_with_wildcards():
    policy = _policy(PUBLIC_READ, {"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{BOB}:root"]},
                                   "Action": ["s3:Put*", "s3:List*"],
                                   "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/bob/*"]})
    assert _decide(policy, None, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/public/a.jpg") == "Allow"
    assert _decide(policy, None, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/private/a.jpg") is None
    assert _decide(policy, None, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/bob/x") is None
    assert _decide(policy, BOB, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/bob/x") == "Allow"
    assert _decide(policy, BOB, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}") == "Allow"
    assert _decide(policy, BOB, "s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/bob/x") is None
    assert _decide(policy, ALICE, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/bob/x") is None


def test_an_explicit_deny_wins_over_any_allow():
    policy = _policy({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{BUCKET}/*"},
                     {"Effect": "Deny", "Principal": {"AWS": BOB}, "NotAction": "s3:GetObject",
                      "Resource": f"arn:aws:s3:::{BUCKET}/*"})
    assert _decide(policy, BOB, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/k") == "Allow"
    assert _decide(policy, BOB, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/k") == "Deny"
    assert _decide(policy, ALICE, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/k") == "Allow"


@pytest.mark.parametrize("condition, context, holds", [
    ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:sourceip": "10.1.2.3"}, True),
    ({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "::1/128"]}}, {"aws:sourceip": "127.0.0.1"}, False),
    ({"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"aws:sourceip": "127.0.0.1"}, False),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:securetransport": "false"}, True),
    ({"Bool": {"aws:SecureTransport": False}}, {"aws:securetransport": "true"}, False),
    ({"StringLike": {"s3:prefix": ["home/", "home/*"]}}, {"s3:prefix": "home/bob"}, True),
    ({"StringEquals": {"s3:prefix": "home/"}}, {}, False),
    ({"StringEqualsIfExists": {"s3:prefix": "home/"}}, {}, True),
    ({"StringNotEquals": {"s3:x-amz-acl": "public-read"}}, {"s3:x-amz-acl": "private"}, True),
    ({"StringNotEquals": {"s3:x-amz-acl": ["public-read", "private"]}}, {"s3:x-amz-acl": "private"}, False),
    ({"StringNotEquals": {"s3:x-amz-acl": "public-read"}}, {}, True),
    ({"StringEquals": {"s3:ExistingObjectTag/class": "open"}}, {"s3:existingobjecttag/class": "open"}, True),
    ({"StringEquals": {"s3:ExistingObjectTag/class": "open"}}, {"s3:existingobjecttag/Class": "open"}, False),
    ({"StringNotLike": {"aws:Referer": "https://example.com/*"}}, {"aws:referer": "https://evil.test/"}, True),
    ({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
     {"aws:currenttime": "2026-06-01T00:00:00Z"}, True),
    ({"DateLessThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, {"aws:currenttime": "2026-06-01T00:00:00Z"}, False),
    ({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "100"}, False),
    ({"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["a", "b"]}}, {"s3:requestobjecttagkeys": ["a"]}, True),
    ({"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": "c"}}, {"s3:requestobjecttagkeys": ["a", "b"]}, False),
    ({"Null": {"s3:x-amz-acl": "true"}}, {}, True),
])
def test_condition_operators(condition, context, holds):
    policy = _policy({**PUBLIC_READ, "Condition": condition})
    assert (_decide(policy, None, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/public/k", **context) == "Allow") is holds


@pytest.mark.parametrize("statement, public", [
    (PUBLIC_READ, True),
    ({**PUBLIC_READ, "Principal": {"AWS": "*"}}, True),
    ({**PUBLIC_READ, "Principal": {"AWS": BOB}}, False),
    ({**PUBLIC_READ, "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}, False),
    ({**PUBLIC_READ, "Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}}, True),
    ({**PUBLIC_READ, "Condition": {"StringLike": {"aws:Referer": "https://example.com/*"}}}, True),
    ({**PUBLIC_READ, "Effect": "Deny"}, False),
])
def test_which_policies_are_public(statement, public):
    assert document.is_public(document.parse(_policy(statement), BUCKET)) is public


@pytest.mark.parametrize("pattern, value, matches", [
    ("*", "", True), ("home/*", "home/", True), ("home/*", "home", False), ("a?c", "abc", True),
    ("a?c", "ac", False), ("*a*b", "xxaxxb", True), ("*a*b", "xxaxxbc", False), ("a*b*c", "abcbc", True),
    ("*a" * 40 + "b", "a" * 1024, False),   # a regex of 40 `.*` would backtrack for ages here
])
def test_wildcards(pattern, value, matches):
    assert conditions.like(pattern, value) is matches
