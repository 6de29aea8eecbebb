"""PublicAccessBlock and OwnershipControls: the bucket settings that override ACLs and policies.

Both are kept in the bucket's record (bucket-config records on the disks, so an index
rebuild keeps them); access.py and acl.py apply them. Only the bucket-level
PublicAccessBlock exists: Pocket has no account-level one.
"""
from __future__ import annotations

from aiohttp import web

from . import errors, xml
from .access import ENFORCED, owned_bucket
from .body import read_small
from .request import S3Request

SETTINGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
OWNERSHIPS = (ENFORCED, "BucketOwnerPreferred", "ObjectWriter")


def _xml(root) -> web.Response:
    return web.Response(body=xml.document(root), content_type="application/xml")


def parse_block(body: bytes) -> dict:
    """The bucket record's `public_access_block` from a PublicAccessBlockConfiguration
    document (a client's PUT, or a source bucket's during `pocket migrate enable`)."""
    root = xml.parse(body)
    if root is None or root.tag != "PublicAccessBlockConfiguration":
        raise errors.MalformedXML()
    settings = {}
    for child in root:
        value = (child.text or "").strip().lower()
        if child.tag not in SETTINGS or child.tag in settings or value not in ("true", "false"):
            raise errors.MalformedXML()
        settings[child.tag] = value == "true"
    return {s: settings.get(s, False) for s in SETTINGS}


def parse_ownership(body: bytes) -> str:
    """The ObjectOwnership of an OwnershipControls document."""
    root = xml.parse(body)
    rules = [] if root is None or root.tag != "OwnershipControls" else root.findall("Rule")
    if len(rules) != 1 or rules[0].find("ObjectOwnership") is None:
        raise errors.MalformedXML()
    ownership = (rules[0].find("ObjectOwnership").text or "").strip()
    if ownership not in OWNERSHIPS:
        raise errors.MalformedXML()
    return ownership


async def put_public_access_block(req: S3Request) -> web.Response:
    owned_bucket(req)
    settings = parse_block(await read_small(req, 64 << 10))
    await req.gateway.buckets.configure(req.bucket, {"public_access_block": settings})
    return web.Response()


async def get_public_access_block(req: S3Request) -> web.Response:
    settings = owned_bucket(req).get("public_access_block")
    if settings is None:
        raise errors.NoSuchPublicAccessBlockConfiguration(resource=req.bucket, BucketName=req.bucket)
    return _xml(xml.element("PublicAccessBlockConfiguration",
                            [(s, "true" if settings.get(s) else "false") for s in SETTINGS]))


async def delete_public_access_block(req: S3Request) -> web.Response:
    if owned_bucket(req).get("public_access_block") is not None:
        await req.gateway.buckets.configure(req.bucket, {"public_access_block": None})
    return web.Response(status=204)


async def put_ownership_controls(req: S3Request) -> web.Response:
    record = owned_bucket(req)
    ownership = parse_ownership(await read_small(req, 64 << 10))
    if ownership != record.get("ownership", "ObjectWriter"):
        await req.gateway.buckets.configure(req.bucket, {"ownership": ownership})
    return web.Response()


async def get_ownership_controls(req: S3Request) -> web.Response:
    ownership = owned_bucket(req).get("ownership")
    if ownership is None:
        raise errors.OwnershipControlsNotFoundError(resource=req.bucket, BucketName=req.bucket)
    return _xml(xml.element("OwnershipControls", [xml.element("Rule", [("ObjectOwnership", ownership)])]))


async def delete_ownership_controls(req: S3Request) -> web.Response:
    """Back to ObjectWriter, as S3's default was before OwnershipControls."""
    if owned_bucket(req).get("ownership") is not None:
        await req.gateway.buckets.configure(req.bucket, {"ownership": None})
    return web.Response(status=204)
