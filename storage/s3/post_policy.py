"""The policy of a browser form upload: who signed it, and whether the form keeps to it.

A POST object form carries a base64 JSON policy (an expiration and a list of
conditions) signed with the uploader's secret: SigV4 (x-amz-signature over the policy
with the day's signing key) or SigV2 (signature, HMAC-SHA1). The signature proves the
policy; the conditions then bind every form field, so whoever holds the form can only
upload what the signer allowed. S3's rules, kept here:

- every field sent must be named by a condition, except the signature fields
  themselves, `policy`, `file` and `x-ignore-*` ("Extra input fields");
- `{"field": "v"}` and `["eq", "$field", "v"]` match exactly, `["starts-with",
  "$field", "p"]` by prefix (for Content-Type, each comma-separated value), and
  `["content-length-range", min, max]` bounds the file's size (checked while it streams);
- field names are case-insensitive; a field the form lacks is the empty string;
  `$bucket` is the bucket addressed.
"""
from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass

from multidict import CIMultiDict

from . import errors, sigv4
from ..numbers import decimal

# Fields no condition has to name (S3's list).
_EXEMPT = {"policy", "x-amz-signature", "awsaccesskeyid", "signature", "file"}
_EXPIRATION = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?Z")


@dataclass
class Signed:
    access_key: str | None      # None: an anonymous form (no policy, no signature)
    min_size: int = 0
    max_size: int | None = None  # content-length-range, if the policy has one


def denied(detail: str) -> errors.S3Error:
    return errors.AccessDenied(f"Invalid according to Policy: {detail}")


def verify(fields: CIMultiDict, secret_for) -> Signed:
    """Check the form's signature and the policy's expiration; returns who signed it.

    A form with neither a policy nor a signature is anonymous (the bucket's ACL then
    decides, see post_object)."""
    policy = fields.get("policy")
    if "x-amz-signature" in fields or "x-amz-algorithm" in fields:
        access_key = _verify_v4(fields, policy, secret_for)
    elif "signature" in fields or "awsaccesskeyid" in fields:
        access_key = _verify_v2(fields, policy, secret_for)
    elif policy is not None:
        raise errors.InvalidArgument("The form has a policy but no signature; sign it (x-amz-signature or "
                                     "signature) or send neither for an anonymous upload.",
                                     ArgumentName="x-amz-signature", ArgumentValue="")
    else:
        return Signed(access_key=None)
    return Signed(access_key=access_key)


def _verify_v4(fields: CIMultiDict, policy: str | None, secret_for) -> str:
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature", "policy"):
        if not fields.get(name):
            raise errors.InvalidArgument(f"Bucket POST must contain a field named '{name}'.  If it is specified, "
                                         "please check the order of the fields.", ArgumentName=name,
                                         ArgumentValue="")
    if fields["x-amz-algorithm"] != sigv4.ALGORITHM:
        raise errors.InvalidArgument(f"x-amz-algorithm must be {sigv4.ALGORITHM}", ArgumentName="x-amz-algorithm",
                                     ArgumentValue=fields["x-amz-algorithm"])
    access_key, date, region, service = sigv4.parse_credential(fields["x-amz-credential"], fields["x-amz-date"],
                                                               errors.InvalidArgument)
    secret = secret_for(access_key)
    if secret is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)
    want = sigv4.sign_policy(secret, date, region, service, policy)
    if not hmac.compare_digest(want, fields["x-amz-signature"].lower()):
        raise errors.SignatureDoesNotMatch(AWSAccessKeyId=access_key, StringToSign=policy,
                                           SignatureProvided=fields["x-amz-signature"])
    return access_key


def _verify_v2(fields: CIMultiDict, policy: str | None, secret_for) -> str:
    for name in ("AWSAccessKeyId", "signature", "policy"):
        if not fields.get(name):
            raise errors.InvalidArgument(f"Bucket POST must contain a field named '{name}'.  If it is specified, "
                                         "please check the order of the fields.", ArgumentName=name,
                                         ArgumentValue="")
    access_key = fields["awsaccesskeyid"]
    secret = secret_for(access_key)
    if secret is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)
    want = base64.b64encode(hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(want, fields["signature"]):
        raise errors.SignatureDoesNotMatch(AWSAccessKeyId=access_key, StringToSign=policy,
                                           SignatureProvided=fields["signature"])
    return access_key


def check(fields: CIMultiDict, bucket: str, signed: Signed, now: float | None = None) -> Signed:
    """Hold the form to its (signed) policy; fills in the size bounds. AccessDenied otherwise."""
    if signed.access_key is None:
        return signed
    now = time.time() if now is None else now
    document = _decode(fields["policy"])
    expiration = document.get("expiration")
    when = _EXPIRATION.fullmatch(expiration) if isinstance(expiration, str) else None
    if when is None:
        raise errors.InvalidPolicyDocument("Invalid Policy: Invalid 'expiration' value: "
                                           f"{json.dumps(expiration)}")
    if calendar.timegm(tuple(int(g) for g in when.groups()) + (0, 0, 0)) < now:
        raise denied("Policy expired.")
    conditions = document.get("conditions")
    if not isinstance(conditions, list):
        raise errors.InvalidPolicyDocument("Invalid Policy: the policy must have a 'conditions' list.")
    values = {name.lower(): value for name, value in fields.items()}
    values["bucket"] = bucket
    named = {"bucket"}
    for condition in conditions:
        op, name, expected = _parse(condition)
        if op == "content-length-range":
            signed.min_size, signed.max_size = expected
            continue
        named.add(name)
        actual = values.get(name, "")
        if not _holds(op, name, actual, expected):
            raise denied(f"Policy Condition failed: {json.dumps(_shown(condition))}")
    extra = sorted(n for n in values if n not in named and n not in _EXEMPT and not n.startswith("x-ignore-"))
    if extra:
        raise denied(f"Extra input fields: {', '.join(extra)}")
    return signed


def _decode(policy: str) -> dict:
    try:
        document = json.loads(base64.b64decode(policy, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise errors.InvalidPolicyDocument("Invalid Policy: the policy field is not base64-encoded JSON.") from None
    if not isinstance(document, dict):
        raise errors.InvalidPolicyDocument("Invalid Policy: the policy must be a JSON object.")
    return document


def _parse(condition) -> tuple[str, str, object]:
    """(operation, lower-case field name, expected) of one condition, or InvalidPolicyDocument."""
    if isinstance(condition, dict) and len(condition) == 1:
        (name, value), = condition.items()
        if isinstance(value, str):
            return "eq", name.lower().removeprefix("$"), value
    elif isinstance(condition, list) and len(condition) == 3 and isinstance(condition[0], str):
        op = condition[0].lower()
        if op == "content-length-range":
            low, high = (_integer(v) for v in condition[1:])
            if low is not None and high is not None and 0 <= low <= high:
                return op, "", (low, high)
        elif op in ("eq", "starts-with") and isinstance(condition[1], str) and condition[1].startswith("$") \
                and isinstance(condition[2], str):
            return op, condition[1][1:].lower(), condition[2]
    raise errors.InvalidPolicyDocument(f"Invalid Policy: Invalid Condition: {json.dumps(_shown(condition))}")


def _integer(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return decimal(value)   # ASCII digits only: "٣".isdigit() is true and int() takes it
    return None


def _holds(op: str, name: str, actual: str, expected: str) -> bool:
    if op == "eq":
        return actual == expected
    if name == "content-type":   # S3: each of a comma-separated list must start with the prefix
        return all(v.strip().startswith(expected) for v in actual.split(","))
    return actual.startswith(expected)


def _shown(condition):
    """The condition as S3 echoes it (anything JSON can say)."""
    try:
        json.dumps(condition)
        return condition
    except (TypeError, ValueError):
        return str(condition)
