"""Object Lock, the S3 side: the bucket's configuration, per-object retention and legal
hold, the x-amz-object-lock-* headers of PUT/GET/HEAD, and x-amz-bypass-governance-retention.

What a lock means (which deletes it refuses, which changes it allows) is
objects/locks.py; this module parses and answers S3. A bucket created with
`x-amz-bucket-object-lock-enabled: true` gets versioning Enabled for good; its
configuration is a field of the bucket record (`object_lock`), changed through
BucketService.configure so it is on the disks before the index sees it. Retention and
legal hold of a version are fields of its record (the manifest) or amendment records.
"""
from __future__ import annotations

import time

from aiohttp import web

from ..objects import locks
from . import errors, xml
from .access import owned_bucket
from .body import read_small
from .request import S3Request
from .versioning import ENABLED, owned_version, requested_version, version_headers
from ..numbers import MAX_INT32, decimal

_MAX_BODY = 64 << 10
_MODE, _UNTIL, _HOLD = "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold"
_BYPASS = "x-amz-bypass-governance-retention"
_MISSING_CONFIG = "Bucket is missing Object Lock Configuration"
LOCKED = "Access Denied because object protected by object lock."


def enabled(bucket: dict) -> bool:
    return bool((bucket.get("object_lock") or {}).get("enabled"))


def create_fields(req: S3Request) -> dict:
    """Bucket record fields of CreateBucket: with Object Lock, versioning is Enabled from the start."""
    value = req.headers.get("x-amz-bucket-object-lock-enabled")
    if value is None or value.strip().lower() == "false":
        return {}
    if value.strip().lower() != "true":
        raise errors.InvalidArgument("x-amz-bucket-object-lock-enabled must be true or false",
                                     ArgumentName="x-amz-bucket-object-lock-enabled", ArgumentValue=value)
    return {"object_lock": {"enabled": True}, "versioning": ENABLED}


def bypass(req: S3Request) -> bool:
    """x-amz-bypass-governance-retention: true, honoured from the bucket's owner only (signed,
    as every x-amz-* header must be). Checked here, not left to the handler's access check,
    so a caller some bucket policy lets delete versions cannot bypass GOVERNANCE with it;
    s3:BypassGovernanceRetention in a policy can widen this later."""
    if req.auth is None or req.headers.get(_BYPASS, "").strip().lower() != "true":
        return False
    return (req.gateway.buckets.get(req.bucket) or {}).get("owner") == req.access_key


def _has_digest(req: S3Request) -> bool:
    return "Content-MD5" in req.headers or any(
        h.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum-")) for h in req.headers) or \
        req.headers.get("x-amz-trailer", "").lower().startswith("x-amz-checksum-")


def _retention(mode: str, until_text: str) -> dict:
    if mode not in locks.MODES:
        raise errors.InvalidArgument("Unknown wormMode directive.", ArgumentName=_MODE, ArgumentValue=mode)
    until = locks.parse_time(until_text)
    if until is None:
        raise errors.InvalidArgument("The retain until date must be an ISO 8601 date and time.",
                                     ArgumentName=_UNTIL, ArgumentValue=until_text)
    if until <= time.time():
        raise errors.InvalidArgument("The retain until date must be in the future!", ArgumentName=_UNTIL,
                                     ArgumentValue=until_text)
    return locks.retention(mode, until)


def _hold(value: str) -> str:
    if value not in (locks.ON, locks.OFF):
        raise errors.InvalidArgument("Legal Hold must be either of 'ON' or 'OFF'", ArgumentName=_HOLD,
                                     ArgumentValue=value)
    return value


def put_fields(req: S3Request, bucket: dict) -> dict:
    """Record fields of a new version (PutObject, CopyObject, CreateMultipartUpload): the
    lock headers, else the bucket's default retention. Refused as S3 refuses them."""
    mode, until, hold = req.headers.get(_MODE), req.headers.get(_UNTIL), req.headers.get(_HOLD)
    if (mode or until or hold) and not enabled(bucket):
        raise errors.InvalidRequest(_MISSING_CONFIG)
    if bool(mode) != bool(until):
        raise errors.InvalidArgument("x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both "
                                     "be supplied", ArgumentName=_MODE if until else _UNTIL)
    fields: dict = {}
    if mode:
        fields["retention"] = _retention(mode, until)
    elif enabled(bucket) and locks.default_retention(bucket):
        fields["retention"] = locks.default_retention(bucket)
    if hold:
        fields["legal_hold"] = _hold(hold)
    if fields and "x-amz-copy-source" not in req.headers and "uploads" not in req.query and not _has_digest(req):
        raise errors.InvalidRequest("Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object "
                                    "requests with Object Lock parameters")
    return fields


def headers(record: dict) -> dict[str, str]:
    """x-amz-object-lock-* of GET and HEAD."""
    out = {}
    if record.get("retention"):
        out[_MODE], out[_UNTIL] = record["retention"]["mode"], record["retention"]["until"]
    if record.get("legal_hold"):
        out[_HOLD] = record["legal_hold"]
    return out


def _xml(root, extra: dict | None = None) -> web.Response:
    return web.Response(body=xml.document(root), content_type="application/xml", headers=extra or {})


async def _body(req: S3Request, tag: str):
    root = xml.parse(await read_small(req, _MAX_BODY, require_digest=True))
    if root is None or root.tag != tag:
        raise errors.MalformedXML()
    return root


# bucket configuration ----------------------------------------------------------------------
async def put_object_lock_configuration(req: S3Request) -> web.Response:
    bucket = owned_bucket(req)
    root = await _body(req, "ObjectLockConfiguration")
    if (root.findtext("ObjectLockEnabled") or "").strip() != "Enabled":
        raise errors.MalformedXML()
    config = {"enabled": True}
    rule = root.find("Rule")
    if rule is not None:
        config["default"] = _default_rule(rule)
    if not enabled(bucket):
        if "x-amz-bucket-object-lock-token" in req.headers:
            raise errors.InvalidBucketState("The bucket does not have Object Lock enabled; it takes no token.")
        if bucket.get("versioning") != ENABLED:   # S3 lets a versioned bucket turn Object Lock on
            raise errors.InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                                            "configuration", resource=req.bucket)
    if await req.gateway.buckets.configure(req.bucket, {"object_lock": config}) is None:
        raise errors.NoSuchBucket(resource=req.bucket, BucketName=req.bucket)
    return web.Response()


def _default_rule(rule) -> dict:
    default = rule.find("DefaultRetention")
    if default is None:
        raise errors.MalformedXML()
    mode = (default.findtext("Mode") or "").strip()
    days, years = default.findtext("Days"), default.findtext("Years")
    if mode not in locks.MODES or (days is None) == (years is None):
        raise errors.MalformedXML()
    text = (days if days is not None else years).strip()
    count = decimal(text.removeprefix("-"), MAX_INT32)   # int() would take "٣" or "+1"
    if count is None:
        raise errors.MalformedXML()
    if text.startswith("-"):   # an integer, but not a period: refused below like 0
        count = -count
    limit = 36500 if days is not None else 100
    if not 0 < count <= limit:
        raise errors.InvalidArgument("Default retention period must be a positive integer value.",
                                     ArgumentName="Days" if days is not None else "Years", ArgumentValue=str(count))
    return {"mode": mode, ("days" if days is not None else "years"): count}


async def get_object_lock_configuration(req: S3Request) -> web.Response:
    bucket = owned_bucket(req)
    if not enabled(bucket):
        raise errors.ObjectLockConfigurationNotFoundError(resource=req.bucket, BucketName=req.bucket)
    fields = [("ObjectLockEnabled", "Enabled")]
    default = bucket["object_lock"].get("default")
    if default:
        period = ("Days", default["days"]) if "days" in default else ("Years", default["years"])
        fields.append(xml.element("Rule", [xml.element("DefaultRetention", [("Mode", default["mode"]), period])]))
    return _xml(xml.element("ObjectLockConfiguration", fields))


# per object --------------------------------------------------------------------------------
async def _locked_version(req: S3Request) -> tuple[dict, dict]:
    bucket, record = await owned_version(req)
    if not enabled(bucket):
        raise errors.InvalidRequest(_MISSING_CONFIG, resource=req.resource)
    return bucket, record


async def _amend(req: S3Request, kind: str, changes: dict, check=None):
    version_id = requested_version(req)
    try:
        updated = await req.gateway.objects.amend(req.bucket, req.key, kind, changes, version_id, check)
    except locks.ObjectLocked as e:
        raise errors.AccessDenied(LOCKED, resource=req.resource) from e
    if updated is None:
        if version_id is not None:
            raise errors.NoSuchVersion(resource=req.resource, Key=req.key, VersionId=version_id)
        raise errors.NoSuchKey(resource=req.resource, Key=req.key)
    return updated


async def put_object_retention(req: S3Request) -> web.Response:
    bucket, record = await _locked_version(req)
    root = await _body(req, "Retention")
    mode, until = (root.findtext("Mode") or "").strip(), (root.findtext("RetainUntilDate") or "").strip()
    if bool(mode) != bool(until) or (mode and mode not in locks.MODES):   # the schema's enumeration
        raise errors.MalformedXML()
    new = _retention(mode, until) if mode else None
    allow_bypass = bypass(req)
    updated = await _amend(req, "retention", {"retention": new},
                           lambda row: locks.check_retention_change(row, new, allow_bypass))
    return web.Response(headers=version_headers(bucket, updated))


async def get_object_retention(req: S3Request) -> web.Response:
    bucket, record = await _locked_version(req)
    held = record.get("retention")
    if not held:
        raise errors.NoSuchObjectLockConfiguration(resource=req.resource)
    return _xml(xml.element("Retention", [("Mode", held["mode"]), ("RetainUntilDate", held["until"])]),
                version_headers(bucket, record))


async def put_object_legal_hold(req: S3Request) -> web.Response:
    bucket, record = await _locked_version(req)
    root = await _body(req, "LegalHold")
    status = (root.findtext("Status") or "").strip()
    if status not in (locks.ON, locks.OFF):
        raise errors.MalformedXML()
    updated = await _amend(req, "legal-hold", {"legal_hold": status})
    return web.Response(headers=version_headers(bucket, updated))


async def get_object_legal_hold(req: S3Request) -> web.Response:
    bucket, record = await _locked_version(req)
    if not record.get("legal_hold"):
        raise errors.NoSuchObjectLockConfiguration(resource=req.resource)
    return _xml(xml.element("LegalHold", [("Status", record["legal_hold"])]), version_headers(bucket, record))
