"""Canned ACLs: `private` and `public-read`, on buckets and objects.

Who may do what with a bucket or an object under these ACLs is access.py.

The ACL is set with `x-amz-acl` (CreateBucket, PutObject, CopyObject,
CreateMultipartUpload, PutBucketAcl, PutObjectAcl) or with an AccessControlPolicy body
that says exactly one of those two things. Other canned ACLs and arbitrary grants
(x-amz-grant-*, other grantees) are NotImplemented. `bucket-owner-full-control` and
`bucket-owner-read` mean `private` here: only a bucket's owner writes to it, so the
object's owner is the bucket's owner already.

The bucket's ACL lives in its record (disk-recorded through BucketService.configure);
an object's is in its manifest at PUT time and, when changed later, in a small `acl`
record the index rebuild applies (`ObjectService.amend`, objects/tagging.py).
"""
from __future__ import annotations

from aiohttp import web

from . import errors, xml
from .access import PRIVATE, PUBLIC_READ, PUBLIC_READ_WRITE, owned_bucket
from .body import read_small
from .request import S3Request
from .versioning import owned_version, requested_version, version_headers

_SAME_AS_PRIVATE = {"bucket-owner-full-control", "bucket-owner-read"}
_UNSUPPORTED = {"authenticated-read", "aws-exec-read", "log-delivery-write"}
_GRANT_HEADERS = ("x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
                  "x-amz-grant-full-control")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_MAX_BODY = 64 << 10


# --- setting it ----------------------------------------------------------------------------

def from_headers(headers, default: str | None = PRIVATE) -> str | None:
    """The canned ACL a request asks for (x-amz-acl), `default` if none."""
    for name in _GRANT_HEADERS:
        if name in headers:
            raise errors.NotImplementedError_(f"{name} is not implemented; Pocket supports the canned ACLs "
                                              "private and public-read (x-amz-acl).")
    value = headers.get("x-amz-acl")
    if value is None:
        return default
    if value in (PRIVATE, PUBLIC_READ, PUBLIC_READ_WRITE):
        return value
    if value in _SAME_AS_PRIVATE:
        return PRIVATE
    if value in _UNSUPPORTED:
        raise errors.NotImplementedError_(f"The canned ACL {value} is not implemented; Pocket supports private "
                                          "and public-read.")
    raise errors.InvalidArgument(f"{value} is not a canned ACL.", ArgumentName="x-amz-acl", ArgumentValue=value)


def stored(acl: str | None) -> dict:
    """The record fields for an ACL: nothing for private, the default."""
    return {"acl": acl} if acl and acl != PRIVATE else {}


def _from_body(body: bytes, owner: str) -> str:
    """An AccessControlPolicy that says `private` or `public-read`; any other grants are NotImplemented."""
    root = xml.parse(body)
    if root is None or root.tag != "AccessControlPolicy" or root.find("AccessControlList") is None:
        raise errors.MalformedXML()
    grants = set()
    for grant in root.find("AccessControlList"):
        grantee, permission = grant.find("Grantee"), grant.find("Permission")
        if grant.tag != "Grant" or grantee is None or permission is None:
            raise errors.MalformedXML()
        who = grantee.find("ID") if grantee.find("ID") is not None else grantee.find("URI")
        grants.add(("" if who is None else (who.text or "").strip(), (permission.text or "").strip()))
    if grants == {(owner, "FULL_CONTROL")}:
        return PRIVATE
    if grants == {(owner, "FULL_CONTROL"), (ALL_USERS, "READ")}:
        return PUBLIC_READ
    raise errors.NotImplementedError_("Pocket supports only the grants of the canned ACLs private and "
                                      "public-read: the owner's FULL_CONTROL, and READ for AllUsers.")


async def _requested(req: S3Request, owner: str) -> str:
    header = from_headers(req.headers, default=None)
    body = await read_small(req, _MAX_BODY)
    if header is not None and body.strip():
        raise errors.UnexpectedContent("This request does not support content when x-amz-acl is given.")
    if header is not None:
        return header
    if not body.strip():
        raise errors.MissingSecurityHeader("Your request was missing a required header: x-amz-acl, or an "
                                           "AccessControlPolicy body.", MissingHeaderName="x-amz-acl")
    return _from_body(body, owner)


def policy(owner: str, acl: str):
    owner_el = xml.element("Owner", [("ID", owner), ("DisplayName", owner)])
    user = xml.element("Grantee", [("ID", owner), ("DisplayName", owner)])
    user.set("xsi:type", "CanonicalUser")
    grants = [xml.element("Grant", [user, ("Permission", "FULL_CONTROL")])]
    for permission in {PUBLIC_READ: ["READ"], PUBLIC_READ_WRITE: ["READ", "WRITE"]}.get(acl, []):
        group = xml.element("Grantee", [("URI", ALL_USERS)])
        group.set("xsi:type", "Group")
        grants.append(xml.element("Grant", [group, ("Permission", permission)]))
    root = xml.element("AccessControlPolicy", [owner_el, xml.element("AccessControlList", grants)])
    root.set("xmlns:xsi", XSI)
    return web.Response(body=xml.document(root), content_type="application/xml")


# --- handlers ------------------------------------------------------------------------------

async def get_bucket_acl(req: S3Request) -> web.Response:
    record = owned_bucket(req)
    return policy(record.get("owner", ""), record.get("acl", PRIVATE))


async def put_bucket_acl(req: S3Request) -> web.Response:
    record = owned_bucket(req)
    acl = await _requested(req, record.get("owner", ""))
    if acl != record.get("acl", PRIVATE):
        await req.gateway.buckets.configure(req.bucket, {"acl": None if acl == PRIVATE else acl})
    return web.Response()


async def get_object_acl(req: S3Request) -> web.Response:
    bucket, record = await owned_version(req)
    response = policy(record.get("owner", ""), record.get("acl", PRIVATE))
    response.headers.update(version_headers(bucket, record))
    return response


async def put_object_acl(req: S3Request) -> web.Response:
    bucket, record = await owned_version(req)
    acl = await _requested(req, record.get("owner", ""))
    if await req.gateway.objects.amend(req.bucket, req.key, "acl", {"acl": acl}, requested_version(req)) is None:
        raise errors.NoSuchKey(resource=req.resource, Key=req.key)
    return web.Response(headers=version_headers(bucket, record))
