"""Who may do what with a bucket or an object: the one decision every request goes through.

`allowed()` decides as S3 does: an explicit Deny in the bucket policy wins; the bucket's
owner may do everything else, except where ACLs bind it (`_acls_bind_owner`); then an
Allow in the policy, then an ACL grant (the bucket's for bucket operations and writes,
the object's for reads of it), unless ACLs are disabled (OwnershipControls
`BucketOwnerEnforced`). PublicAccessBlock's IgnorePublicAcls drops grants to
AllUsers/AuthenticatedUsers; RestrictPublicBuckets drops a public policy's Allows for
everyone but the owner. Identities: an access key is an account and its canonical id
(policy/document.py).

The handlers ask through `owned_bucket`, `readable_bucket`, `readable_object` and
`check`, which take the action from the operation being run (actions.py).
"""
from __future__ import annotations

import functools
import logging
import time
from urllib.parse import parse_qsl

from ..objects.contracts import VersionRecord
from . import errors, grants, xml
from .actions import ACTIONS, NEVER_ANONYMOUS, OWNER_KEEPS, acl_permission, action_of
from .policy import document
from .request import S3Request

log = logging.getLogger("pocket.s3")

PRIVATE, PUBLIC_READ = "private", "public-read"
ENFORCED = "BucketOwnerEnforced"
# Operations that check each key they touch themselves (DeleteObjects).
_PER_KEY = {"delete_objects"}


def refuse_anonymous() -> None:
    raise errors.AccessDenied("Anonymous access is not allowed for this request; sign it with your keys.")


def check_anonymous(handler) -> None:
    """Before the handler runs: only operations whose bucket policy or ACL can open them."""
    if handler.__name__ not in ACTIONS or handler.__name__ in NEVER_ANONYMOUS:
        refuse_anonymous()


def check_expected_owner(buckets, name: str, headers, header: str = "x-amz-expected-bucket-owner") -> None:
    """x-amz-expected-bucket-owner (x-amz-source-expected-bucket-owner for a copy's source):
    a caller that names the account it expects to own the bucket gets 403 rather than
    writing into, or reading from, someone else's bucket of the same name. An owner's
    account id is their access key in Pocket (the ID in ListBuckets' Owner)."""
    expected = headers.get(header)
    if expected is None or not name:
        return
    record = buckets.get(name)
    if record is not None and record.get("owner") != expected:
        raise errors.AccessDenied(f"The bucket {name} is not owned by the account {expected} named in {header}.",
                                  resource=f"/{name}")


def acls_enabled(bucket: dict) -> bool:
    return bucket.get("ownership") != ENFORCED


def _context(req: S3Request, key: str | None, obj: dict | None, caller: str | None, headers) -> dict:
    """The condition keys of this request (lower-case names; tag names keep their case)."""
    h, q = headers, req.query
    ctx = {"aws:sourceip": req.http.remote or "", "aws:securetransport": "true" if req.http.secure else "false",
           "aws:currenttime": xml.iso8601(time.time()), "aws:epochtime": str(int(time.time())),
           "aws:principaltype": "Account" if caller else "Anonymous"}
    if caller:
        ctx["aws:userid"] = ctx["aws:username"] = ctx["aws:principalaccount"] = caller
    for name, ctx_key in (("Referer", "aws:referer"), ("User-Agent", "aws:useragent"), ("x-amz-acl", "s3:x-amz-acl"),
                          ("x-amz-copy-source", "s3:x-amz-copy-source"),
                          ("x-amz-metadata-directive", "s3:x-amz-metadata-directive"),
                          ("x-amz-server-side-encryption", "s3:x-amz-server-side-encryption"),
                          ("x-amz-storage-class", "s3:x-amz-storage-class"),
                          ("x-amz-content-sha256", "s3:x-amz-content-sha256")):
        if name in h:
            ctx[ctx_key] = h[name]
    for name in grants.HEADERS:
        if name in h:
            ctx["s3:" + name] = h[name]
    for name in ("prefix", "delimiter", "max-keys", "versionId"):
        if name in q:
            ctx["s3:" + name.lower()] = q[name]
    if obj is not None:
        for k, v in (obj.get("tags") or {}).items():
            ctx[f"s3:existingobjecttag/{k}"] = v
    if "x-amz-tagging" in h:
        tags = dict(parse_qsl(h["x-amz-tagging"], keep_blank_values=True))
        ctx["s3:requestobjecttagkeys"] = list(tags)
        ctx.update({f"s3:requestobjecttag/{k}": v for k, v in tags.items()})
    return ctx


@functools.lru_cache(maxsize=256)
def _statements(text: str, bucket_name: str) -> tuple:
    """A stored policy, parsed once: it was checked when it was put, and evaluation runs per request."""
    return document.parse(text, bucket_name)


_REQUESTER = object()


def allowed(req: S3Request, action: str | None, bucket_name: str, bucket: dict, key: str | None = None,
            obj: dict | None = None, *, caller=_REQUESTER, headers=None) -> bool:
    """`caller` (None: anonymous) and `headers` stand in for the request's signer and headers
    when the request speaks for someone else: a POST object form is signed in its body, and
    its fields are what a PUT says in headers."""
    caller = (req.access_key or None) if caller is _REQUESTER else (caller or None)
    headers = req.headers if headers is None else headers
    owner = bucket.get("owner", "")
    pab = bucket.get("public_access_block") or {}
    verdict = None
    if bucket.get("policy") and action:
        try:
            statements = _statements(bucket["policy"], bucket_name)
        except document.MalformedPolicy as e:   # stored by hand or by an older Pocket: fail closed
            log.warning("bucket %s: its stored policy does not parse (%s); only the owner gets in until it is "
                        "put again or deleted", bucket_name, e)
            return caller is not None and caller == owner
        restricted = pab.get("RestrictPublicBuckets") and caller != owner and document.is_public(statements)
        resource = f"arn:aws:s3:::{bucket_name}" + (f"/{key}" if key is not None else "")
        verdict = document.evaluate(statements, caller, action, resource, _context(req, key, obj, caller, headers),
                                    public_allows=not restricted)
    if verdict == "Deny" and not (caller == owner and action in OWNER_KEEPS):
        return False
    if caller is not None and caller == owner and not _acls_bind_owner(bucket, action, obj):
        return True
    if verdict == "Allow":
        return True
    if not action or not acls_enabled(bucket):
        return False
    level, permission = acl_permission(action)
    ignore_public = bool(pab.get("IgnorePublicAcls"))
    if level == "bucket":
        return grants.permits(grants.expand(bucket.get("acl"), owner, owner), caller, permission, ignore_public)
    if level == "object" and obj is not None:
        if caller is not None and obj.get("owner") == caller:
            return True   # the writer owns its object (ObjectWriter)
        return grants.permits(grants.expand(obj.get("acl"), obj.get("owner") or owner, owner), caller,
                              permission, ignore_public)
    return False


def _acls_bind_owner(bucket: dict, action: str | None, obj: dict | None) -> bool:
    """Where S3 holds a bucket's owner to the ACLs, as it holds anyone (ACLs on only).

    An object another account wrote is that account's: its ACL decides whether the bucket's
    owner may read it or its ACL (deleting it stays a bucket WRITE). A bucket ACL the owner
    stripped of its own grants takes listing and writing away from it too; reading and
    writing the bucket's ACL stay the owner's, so it can always give them back. Objects
    written anonymously count as the bucket owner's (their record names no owner)."""
    if not action or not acls_enabled(bucket):
        return False
    level, permission = acl_permission(action)
    if level == "object":
        return obj is not None and obj.get("owner") not in (None, "", bucket.get("owner", ""))
    return level == "bucket" and permission not in ("READ_ACP", "WRITE_ACP")


def _action(req: S3Request) -> str | None:
    return action_of(req.http.get("operation", ""), versioned=req.query.get("versionId") is not None)


def _bucket(req: S3Request, name: str) -> dict:
    return _existing(req.gateway.buckets.get(name), name)


async def _abucket(req: S3Request, name: str) -> dict:
    return _existing(await req.gateway.buckets.aget(name), name)


def _existing(record: dict | None, name: str) -> dict:
    if record is None:
        raise errors.NoSuchBucket(resource=name, BucketName=name)
    return record


def check(req: S3Request, action: str, bucket: dict, key: str | None = None, obj: dict | None = None,
          bucket_name: str | None = None, *, caller=_REQUESTER, headers=None) -> None:
    bucket_name = bucket_name or req.bucket
    if not allowed(req, action, bucket_name, bucket, key, obj, caller=caller, headers=headers):
        raise errors.AccessDenied(resource=f"/{bucket_name}/{key}" if key is not None else f"/{bucket_name}")


def owned_bucket(req: S3Request) -> dict:
    """The request's bucket record, if it exists and the caller may run this operation on it
    (for an object operation, on its key): its owner, or whom the policy or a grant lets."""
    record = _bucket(req, req.bucket)
    if req.http.get("operation") not in _PER_KEY:
        check(req, _action(req), record, req.key or None)
    return record


def readable_bucket(req: S3Request) -> dict:
    """The bucket record if the caller may list it (ListBucket, ListBucketVersions...)."""
    return owned_bucket(req)


async def readable_object(req: S3Request, bucket_name: str | None = None, key: str | None = None,
                          find=None, action: str | None = None) -> VersionRecord:
    """The object's record if the caller may run this operation on it (GetObject by default
    for another bucket's key: CopyObject asks about its source).

    `find(bucket_record)` looks the record up and raises S3's error when it is not there
    (versioning.addressed: a given version id); by default the current version. A caller
    who may not list the bucket learns nothing about absent keys: AccessDenied."""
    bucket_name, key = bucket_name or req.bucket, key or req.key
    resource = f"/{bucket_name}/{key}"
    if action is None:  # CopyObject and UploadPartCopy read their source (a version of it: ?versionId=)
        if req.http.get("operation") in ("put_object", "upload_part") or (bucket_name, key) != (req.bucket, req.key):
            action = action_of("get_object", "versionId=" in req.headers.get("x-amz-copy-source", ""))
        else:
            action = _action(req)
    bucket = await _abucket(req, bucket_name)
    if find is None:
        async def find(_bucket):
            record = await req.gateway.objects.head(bucket_name, key)
            if record is None:
                raise errors.NoSuchKey(resource=resource, Key=key)
            return record
    try:
        record = await find(bucket)
    except errors.S3Error:
        if allowed(req, "s3:ListBucket", bucket_name, bucket):
            raise
        raise errors.AccessDenied(resource=resource) from None
    if allowed(req, action, bucket_name, bucket, key, record):
        return record
    raise errors.AccessDenied(resource=resource)
