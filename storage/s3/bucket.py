"""Bucket operations: create, head, delete, list, location."""
from __future__ import annotations

import time

from aiohttp import web

from . import errors, object_lock, xml
from .access import owned_bucket
from .acl import new_bucket
from .body import read_small
from .names import check_bucket_name
from .request import S3Request


async def list_buckets(req: S3Request) -> web.Response:
    mine = [b for b in await req.gateway.index.call(req.gateway.buckets.list) if b.get("owner") == req.access_key]
    body = xml.element("ListAllMyBucketsResult", [
        xml.element("Owner", [("ID", req.access_key), ("DisplayName", req.access_key)]),
        xml.element("Buckets", [xml.element("Bucket", [("Name", b["name"]), ("CreationDate", xml.iso8601(b["created"]))])
                                for b in mine]),
    ])
    return _xml(body)


async def create_bucket(req: S3Request) -> web.Response:
    check_bucket_name(req.bucket)
    config = xml.parse(await read_small(req, 64 << 10))
    if config is not None and config.tag != "CreateBucketConfiguration":
        raise errors.MalformedXML()
    existing = req.gateway.buckets.get(req.bucket)
    if existing is None:
        record = {"owner": req.access_key, "created": time.time(), **new_bucket(req),
                  **object_lock.create_fields(req)}
        created = await req.gateway.buckets.create(req.bucket, record)
        if created:
            return web.Response(headers={"Location": f"/{req.bucket}"})
        existing = req.gateway.buckets.get(req.bucket) or {}
    if existing.get("owner") == req.access_key:
        raise errors.BucketAlreadyOwnedByYou(resource=req.bucket, BucketName=req.bucket)
    raise errors.BucketAlreadyExists(resource=req.bucket, BucketName=req.bucket)


async def head_bucket(req: S3Request) -> web.Response:
    owned_bucket(req)
    return web.Response(headers={"x-amz-bucket-region": req.gateway.region})


async def delete_bucket(req: S3Request) -> web.Response:
    owned_bucket(req)
    await req.gateway.buckets.delete(req.bucket)
    return web.Response(status=204)


async def get_location(req: S3Request) -> web.Response:
    owned_bucket(req)
    region = req.gateway.region
    return _xml(xml.element("LocationConstraint", text=None if region == "us-east-1" else region))


def _xml(root) -> web.Response:
    return web.Response(body=xml.document(root), content_type="application/xml")
