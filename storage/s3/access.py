"""Who may touch a bucket or an object: the one place every handler asks.

Pocket's permission model is small on purpose: a bucket's owner may do everything
with it; `public-read` on a bucket lets anyone (signed by another user, or not signed
at all) list it and read its objects; `public-read` on an object lets anyone read that
object. Everything else a caller who is not the owner tries is AccessDenied.

It lives apart from the handlers that set ACLs (acl.py), create buckets (bucket.py) or
address versions (versioning.py), because all of them ask these questions: with the
checks in one of them, those modules imported each other in a circle.
"""
from __future__ import annotations

from ..objects.contracts import VersionRecord
from . import errors
from .request import S3Request

PRIVATE, PUBLIC_READ, PUBLIC_READ_WRITE = "private", "public-read", "public-read-write"
_ANYONE_READS = {PUBLIC_READ, PUBLIC_READ_WRITE}
# Operations an anonymous caller may attempt; the handler then checks the ACLs. A POST
# object form carries its signature in the body: post_object asks writable_bucket itself.
PUBLIC_OPERATIONS = {"get_object", "head_object", "list_objects_v1", "list_objects_v2", "list_object_versions",
                     "post_object"}


def refuse_anonymous() -> None:
    raise errors.AccessDenied("Anonymous access is not allowed for this request; sign it with your keys.")


def check_anonymous(handler) -> None:
    if handler.__name__ not in PUBLIC_OPERATIONS:
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


def _is_owner(req: S3Request, bucket: dict) -> bool:
    return req.auth is not None and bucket.get("owner") == req.access_key


def owned_bucket(req: S3Request) -> dict:
    """The request's bucket record, if it exists and the caller owns it."""
    record = req.gateway.buckets.get(req.bucket)
    if record is None:
        raise errors.NoSuchBucket(resource=req.bucket, BucketName=req.bucket)
    if record.get("owner") != req.access_key:
        raise errors.AccessDenied(resource=req.bucket)
    return record


def readable_bucket(req: S3Request) -> dict:
    """The bucket record if the caller may list it: its owner, or anyone when it is public-read."""
    record = req.gateway.buckets.get(req.bucket)
    if record is None:
        raise errors.NoSuchBucket(resource=req.bucket, BucketName=req.bucket)
    if not _is_owner(req, record) and record.get("acl") not in _ANYONE_READS:
        raise errors.AccessDenied(resource=req.bucket)
    return record


def writable_bucket(req: S3Request, access_key: str | None) -> dict:
    """The bucket record if `access_key` (None: anonymous) may add objects to it: its owner,
    or anyone when the bucket is public-read-write. POST object asks with the form's signer,
    not the request's (a browser form has no Authorization header)."""
    record = req.gateway.buckets.get(req.bucket)
    if record is None:
        raise errors.NoSuchBucket(resource=req.bucket, BucketName=req.bucket)
    if (access_key is None or record.get("owner") != access_key) and record.get("acl") != PUBLIC_READ_WRITE:
        raise errors.AccessDenied(resource=req.bucket)
    return record


async def readable_object(req: S3Request, bucket_name: str | None = None, key: str | None = None,
                          find=None) -> VersionRecord:
    """The object's record if the caller may read it (owner, public bucket or public object).

    Defaults to the request's own bucket and key; CopyObject asks about its source.
    `find(bucket_record)` looks the record up and raises S3's error when it is not there
    (versioning.addressed: a given version id); by default the current version."""
    bucket_name, key = bucket_name or req.bucket, key or req.key
    resource = f"/{bucket_name}/{key}"
    bucket = req.gateway.buckets.get(bucket_name)
    if bucket is None:
        raise errors.NoSuchBucket(resource=bucket_name, BucketName=bucket_name)
    if find is None:
        async def find(_bucket):
            record = await req.gateway.objects.head(bucket_name, key)
            if record is None:
                raise errors.NoSuchKey(resource=resource, Key=key)
            return record
    if _is_owner(req, bucket) or bucket.get("acl") in _ANYONE_READS:
        return await find(bucket)
    try:
        record = await find(bucket)
    except errors.S3Error:
        record = None
    if record is not None and record.get("acl") in _ANYONE_READS:
        return record
    raise errors.AccessDenied(resource=resource)  # without list rights, a missing key is not revealed
