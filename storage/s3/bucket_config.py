"""Put, Get and Delete of one bucket setting stored in the bucket record (CORS, lifecycle,
tagging, default encryption, policy): the shape every such S3 subresource shares.

The setting goes through `buckets.configure`, which records it on the disks before the
index changes (so `pocket index rebuild` keeps it). A bucket deleted between the access
check and the change answers NoSuchBucket rather than pretending it stored anything.
"""
from __future__ import annotations

from typing import Callable

from aiohttp import web

from . import errors, xml
from .access import owned_bucket
from .request import S3Request


async def store(req: S3Request, field: str, value, status: int = 200) -> web.Response:
    """Set the bucket's `field` to `value` (the caller has checked access and parsed it)."""
    if await req.gateway.buckets.configure(req.bucket, {field: value}) is None:
        raise errors.NoSuchBucket(resource=req.bucket, BucketName=req.bucket)
    return web.Response(status=status)


def stored(req: S3Request, field: str, missing: type[errors.S3Error]):
    """The bucket's `field` for its owner; `missing` (S3's "no such configuration") if unset."""
    value = owned_bucket(req).get(field)
    if not value:
        raise missing(resource=req.bucket, BucketName=req.bucket)
    return value


def render(req: S3Request, field: str, missing: type[errors.S3Error], to_xml: Callable) -> web.Response:
    """GET of an XML setting: `to_xml(value)` is its document's root element."""
    return web.Response(body=xml.document(to_xml(stored(req, field, missing))), content_type="application/xml")


async def remove(req: S3Request, field: str) -> web.Response:
    """DELETE: 204 whether or not the setting was there, as S3 answers."""
    if owned_bucket(req).get(field):
        await req.gateway.buckets.configure(req.bucket, {field: None})
    return web.Response(status=204)
