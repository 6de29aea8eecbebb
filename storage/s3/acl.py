"""ACLs: every canned ACL and x-amz-grant-* / AccessControlPolicy grants, on buckets and objects.

Who may do what under them is access.py; what they are is grants.py. The ACL is set
with `x-amz-acl` or `x-amz-grant-*` (CreateBucket, PutObject, CopyObject,
CreateMultipartUpload, PutBucketAcl, PutObjectAcl) or an AccessControlPolicy body.

OwnershipControls decide whether ACLs count at all: with `BucketOwnerEnforced` (the
default for new buckets, as on S3 since 2023) the bucket's owner owns every object and
an ACL that grants anyone else anything is refused (AccessControlListNotSupported);
buckets from before OwnershipControls existed in Pocket count as `ObjectWriter`, so
what they allowed stays allowed. PublicAccessBlock's BlockPublicAcls refuses public ACLs.

The bucket's ACL lives in its record (disk-recorded through BucketService.configure);
an object's is in its manifest at PUT time and, when changed later, in a small `acl`
record the index rebuild applies (`ObjectService.amend`, objects/tagging.py).
"""
from __future__ import annotations

from aiohttp import web

from . import errors, grants
from .access import ENFORCED, PRIVATE, owned_bucket
from .body import read_small
from .request import S3Request
from .versioning import owned_version, requested_version, version_headers

_MAX_BODY = 64 << 10


# --- what a request asks for ---------------------------------------------------------------

def from_headers(headers, users=(), default: str | None = PRIVATE):
    """The ACL a request asks for: a canned name (x-amz-acl), grants (x-amz-grant-*), or `default`."""
    canned = headers.get("x-amz-acl")
    explicit = grants.from_grant_headers(headers, users)
    if canned is not None and explicit:
        raise errors.InvalidRequest("Specifying both Canned ACLs and Header Grants is not allowed")
    if canned is not None:
        if canned not in grants.CANNED:
            raise errors.InvalidArgument(f"{canned} is not a canned ACL.", ArgumentName="x-amz-acl",
                                         ArgumentValue=canned)
        return canned
    return explicit or default


def _checked(bucket: dict, acl, owner: str, refuse=errors.AccessControlListNotSupported):
    """`acl` if the bucket's settings allow it: refused when ACLs are disabled and it grants anyone
    but the bucket's owner, or when PublicAccessBlock blocks public ACLs and it is public."""
    expanded = grants.expand(acl, owner, bucket.get("owner", ""))
    if bucket.get("ownership") == ENFORCED and not grants.only_owner(expanded, bucket.get("owner", "")):
        raise refuse()
    if (bucket.get("public_access_block") or {}).get("BlockPublicAcls") and grants.is_public(expanded):
        raise errors.AccessDenied("PublicAccessBlock on this bucket blocks public ACLs (BlockPublicAcls).")
    return acl


def stored(acl) -> dict:
    """The record fields for an ACL: nothing for private, the default."""
    return {"acl": acl} if acl and acl != PRIVATE else {}


def new_object(req: S3Request, bucket: dict, headers=None, writer: str | None = None) -> dict:
    """The owner and ACL fields of an object the request writes (PUT, copy, multipart; POST
    object passes its form's fields as `headers` and the form's signer as `writer`, "" when
    anonymous)."""
    acl = from_headers(req.headers if headers is None else headers, req.gateway.cfg.credentials)
    writer = req.access_key if writer is None else writer
    ownership = bucket.get("ownership")
    owner = (bucket.get("owner", "") if ownership == ENFORCED or
             (ownership == "BucketOwnerPreferred" and acl == "bucket-owner-full-control") else writer)
    _checked(bucket, acl, owner)
    if ownership == ENFORCED:
        acl = None   # ACLs are disabled: nothing to keep
    elif acl in ("bucket-owner-full-control", "bucket-owner-read") and owner == bucket.get("owner"):
        acl = None   # the same as private when the writer is the bucket's owner
    return {"owner": owner, **stored(acl)}


def new_bucket(req: S3Request) -> dict:
    """The ownership and ACL fields of a bucket CreateBucket makes."""
    ownership = req.headers.get("x-amz-object-ownership", ENFORCED)
    if ownership not in (ENFORCED, "BucketOwnerPreferred", "ObjectWriter"):
        raise errors.InvalidArgument("Invalid x-amz-object-ownership header", ArgumentName="x-amz-object-ownership",
                                     ArgumentValue=ownership)
    acl = from_headers(req.headers, req.gateway.cfg.credentials)
    _checked({"owner": req.access_key, "ownership": ownership}, acl, req.access_key,
             errors.InvalidBucketAclWithObjectOwnership)
    return {"ownership": ownership, **stored(None if ownership == ENFORCED else acl)}


async def _requested(req: S3Request, owner: str):
    header = from_headers(req.headers, req.gateway.cfg.credentials, default=None)
    body = await read_small(req, _MAX_BODY)
    if header is not None and body.strip():
        raise errors.UnexpectedContent("This request does not support content when x-amz-acl or x-amz-grant-* "
                                       "is given.")
    if header is not None:
        return header
    if not body.strip():
        raise errors.MissingSecurityHeader("Your request was missing a required header: x-amz-acl, or an "
                                           "AccessControlPolicy body.", MissingHeaderName="x-amz-acl")
    named_owner, found = grants.from_xml(body, req.gateway.cfg.credentials)
    if named_owner is not None and named_owner != owner:
        raise errors.AccessDenied("The Owner in an AccessControlPolicy must be the resource's owner.")
    if found == [["id", owner, "FULL_CONTROL"]]:
        return PRIVATE
    if sorted(found) == sorted([["id", owner, "FULL_CONTROL"], ["group", grants.ALL_USERS, "READ"]]):
        return "public-read"
    return found


def _response(owner: str, grant_list, bucket: dict, headers=None) -> web.Response:
    if bucket.get("ownership") == ENFORCED:
        grant_list = [["id", bucket.get("owner", ""), "FULL_CONTROL"]]
    return web.Response(body=grants.document(owner, grant_list), content_type="application/xml",
                        headers=headers or {})


# --- handlers ------------------------------------------------------------------------------

async def get_bucket_acl(req: S3Request) -> web.Response:
    record = owned_bucket(req)
    owner = record.get("owner", "")
    return _response(owner, grants.expand(record.get("acl"), owner, owner), record)


async def put_bucket_acl(req: S3Request) -> web.Response:
    record = owned_bucket(req)
    owner = record.get("owner", "")
    acl = _checked(record, await _requested(req, owner), owner)
    if acl != record.get("acl", PRIVATE):
        await req.gateway.buckets.configure(req.bucket, {"acl": None if acl == PRIVATE else acl})
    return web.Response()


async def get_object_acl(req: S3Request) -> web.Response:
    bucket, record = await owned_version(req)
    owner = record.get("owner") or bucket.get("owner", "")
    return _response(owner, grants.expand(record.get("acl"), owner, bucket.get("owner", "")), bucket,
                     version_headers(bucket, record))


async def put_object_acl(req: S3Request) -> web.Response:
    bucket, record = await owned_version(req)
    owner = record.get("owner") or bucket.get("owner", "")
    acl = _checked(bucket, await _requested(req, owner), owner)
    if await req.gateway.objects.amend(req.bucket, req.key, "acl", {"acl": acl}, requested_version(req)) is None:
        raise errors.NoSuchKey(resource=req.resource, Key=req.key)
    return web.Response(headers=version_headers(bucket, record))
