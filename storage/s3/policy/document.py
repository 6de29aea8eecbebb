"""A bucket policy: AWS's JSON policy language, checked at PUT and evaluated per request.

Pocket users map onto AWS identities like this: every credential is an account of its
own whose id (and canonical user id) is its access key. So a statement names a Pocket
user as `"AWS": "<access key>"`, `"AWS": "arn:aws:iam::<access key>:root"`,
`"AWS": "arn:aws:iam::<access key>:user/<any name>"` or `"CanonicalUser": "<access key>"`;
`"*"` (or `"AWS": "*"`) is everyone, anonymous callers included.

The policy is kept as the author sent it (GetBucketPolicy returns it unchanged) and
parsed again from that text when it is evaluated; parsing is cheap next to a request.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from . import conditions
from .conditions import ConditionError, like

MAX_BYTES = 20 << 10   # S3's limit on a bucket policy
_PUBLIC_SAFE_KEYS = {"aws:sourceip", "aws:sourcevpc", "aws:sourcevpce", "aws:sourcearn", "aws:sourceaccount",
                     "aws:sourceowner", "aws:principalaccount", "aws:principalorgid", "aws:principalarn",
                     "aws:userid", "aws:username", "s3:dataaccesspointaccount", "s3:dataaccesspointarn"}


class MalformedPolicy(ValueError):
    """The text is not a policy S3 would accept; the message says what is wrong."""


@dataclass(frozen=True)
class Statement:
    allow: bool
    principals: tuple | None       # None: the statement uses NotPrincipal
    not_principals: tuple | None
    actions: tuple | None
    not_actions: tuple | None
    resources: tuple | None
    not_resources: tuple | None
    condition: dict


def _strings(value, field: str) -> tuple:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise MalformedPolicy(f"{field} must be a string or a list of strings")
    return tuple(values)


def _principals(value, field: str) -> tuple:
    """Principal as ("*",) or (("AWS", id), ("CanonicalUser", id), ...)."""
    if value == "*":
        return ("*",)
    if not isinstance(value, dict) or not value:
        raise MalformedPolicy(f"Invalid {field}: use \"*\" or {{\"AWS\": [...]}}")
    out = []
    for kind, ids in value.items():
        if kind not in ("AWS", "CanonicalUser", "Service", "Federated"):
            raise MalformedPolicy(f"Invalid {field} type {kind}")
        out += [(kind, i) for i in _strings(ids, field)]
    return tuple(out)


def _statement(raw, bucket: str) -> Statement:
    if not isinstance(raw, dict):
        raise MalformedPolicy("Each Statement must be an object")
    unknown = set(raw) - {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
                          "NotResource", "Condition"}
    if unknown:
        raise MalformedPolicy(f"Unknown field {sorted(unknown)[0]}")
    if raw.get("Effect") not in ("Allow", "Deny"):
        raise MalformedPolicy("Invalid effect: Effect must be Allow or Deny")
    if ("Principal" in raw) == ("NotPrincipal" in raw):
        raise MalformedPolicy("Missing required field Principal")
    if ("Action" in raw) == ("NotAction" in raw):
        raise MalformedPolicy("Missing required field Action")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise MalformedPolicy("Missing required field Resource")
    actions = _strings(raw.get("Action", raw.get("NotAction")), "Action")
    for action in actions:
        if action != "*" and not action.lower().startswith("s3:"):
            raise MalformedPolicy(f"Policy has invalid action {action}")
    resources = _strings(raw.get("Resource", raw.get("NotResource")), "Resource")
    for resource in resources:
        if resource != "*" and not (resource.startswith("arn:aws:s3:::") and
                                    like(resource[len("arn:aws:s3:::"):].split("/", 1)[0], bucket)):
            raise MalformedPolicy("Policy has invalid resource")
    try:
        condition = conditions.validate(raw.get("Condition", {}))
    except ConditionError as e:
        raise MalformedPolicy(f"Invalid Condition: {e}") from None
    principal = "Principal" in raw
    who = _principals(raw["Principal" if principal else "NotPrincipal"], "Principal")
    return Statement(raw["Effect"] == "Allow", who if principal else None, None if principal else who,
                     actions if "Action" in raw else None, None if "Action" in raw else actions,
                     resources if "Resource" in raw else None, None if "Resource" in raw else resources, condition)


def parse(text: str | bytes, bucket: str) -> tuple[Statement, ...]:
    """The statements of a bucket policy; MalformedPolicy says why it is not one."""
    if len(text) > MAX_BYTES:
        raise MalformedPolicy(f"Policies must be no larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise MalformedPolicy("Policies must be valid JSON") from None
    if not isinstance(doc, dict):
        raise MalformedPolicy("Policies must be valid JSON and the first byte must be '{'")
    if set(doc) - {"Version", "Id", "Statement"}:
        raise MalformedPolicy(f"Unknown field {sorted(set(doc) - {'Version', 'Id', 'Statement'})[0]}")
    if doc.get("Version", "2008-10-17") not in ("2008-10-17", "2012-10-17"):
        raise MalformedPolicy("The policy must contain a valid version string")
    raw = doc.get("Statement")
    statements = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else None
    if not statements:
        raise MalformedPolicy("Missing required field Statement")
    return tuple(_statement(s, bucket) for s in statements)


def principal_matches(principals: tuple, caller: str | None) -> bool:
    """Whether `caller` (an access key; None when anonymous) is among `principals`."""
    for p in principals:
        if p == "*" or p == ("AWS", "*"):
            return True
        if caller is None:
            continue
        kind, ident = p
        if kind == "CanonicalUser" and ident == caller:
            return True
        if kind == "AWS" and (ident == caller or ident == f"arn:aws:iam::{caller}:root" or
                              ident.startswith(f"arn:aws:iam::{caller}:user/")):
            return True
    return False


def _any(patterns: tuple, value: str, fold: bool = False) -> bool:
    return any(like(p.lower() if fold else p, value.lower() if fold else value) for p in patterns)


def applies(s: Statement, caller: str | None, action: str, resource: str, context: dict) -> bool:
    if s.principals is not None and not principal_matches(s.principals, caller):
        return False
    if s.not_principals is not None and principal_matches(s.not_principals, caller):
        return False
    if s.actions is not None and not _any(s.actions, action, fold=True):
        return False
    if s.not_actions is not None and _any(s.not_actions, action, fold=True):
        return False
    if s.resources is not None and not _any(s.resources, resource):
        return False
    if s.not_resources is not None and _any(s.not_resources, resource):
        return False
    return conditions.holds(s.condition, context)


def evaluate(statements, caller: str | None, action: str, resource: str, context: dict,
             public_allows: bool = True) -> str | None:
    """"Deny" if any statement denies, else "Allow" if one allows, else None (no opinion).

    `public_allows=False` (RestrictPublicBuckets over a public policy) drops every Allow."""
    allowed = False
    for s in statements:
        if applies(s, caller, action, resource, context):
            if not s.allow:
                return "Deny"
            allowed = allowed or public_allows
    return "Allow" if allowed else None


def is_public(statements) -> bool:
    """S3's test: an Allow for everyone not pinned down by a fixed-value condition (source IP
    range, account, VPC...)."""
    for s in statements:
        if not s.allow:
            continue
        everyone = s.not_principals is not None or (s.principals and ("*" in s.principals or ("AWS", "*") in s.principals))
        if not everyone:
            continue
        pinned = any(key.lower() in _PUBLIC_SAFE_KEYS and not op.startswith("Not") and
                     not any(str(v) in ("*", "0.0.0.0/0", "::/0") for v in values)
                     for op, tests in s.condition.items() for key, values in tests.items())
        if not pinned:
            return True
    return False
