"""Bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration and `x-amz-expiration`.

The rules are a bucket setting like CORS: stored in the bucket record under "lifecycle"
and, before the index changes, as a bucket-config record on the disks, so `pocket index
rebuild` recovers them. What they mean is storage/lifecycle/ (rules.py decides, runner.py
applies); this module and lifecycle_xml.py (the XML in and out) only speak S3.
"""
from __future__ import annotations

from aiohttp import web

from ..lifecycle import rules
from . import errors, lifecycle_xml, xml
from .body import read_small
from .access import owned_bucket
from .request import S3Request

_MAX_BODY = 1 << 20   # 1000 rules with tags and long prefixes fit


async def put_bucket_lifecycle(req: S3Request) -> web.Response:
    owned_bucket(req)
    parsed = lifecycle_xml.parse(await read_small(req, _MAX_BODY))
    if await req.gateway.buckets.configure(req.bucket, {"lifecycle": parsed}) is None:
        raise errors.NoSuchBucket(resource=req.bucket, BucketName=req.bucket)
    return web.Response()


async def get_bucket_lifecycle(req: S3Request) -> web.Response:
    stored = owned_bucket(req).get("lifecycle")
    if not stored:
        raise errors.NoSuchLifecycleConfiguration(resource=req.bucket, BucketName=req.bucket)
    return web.Response(body=xml.document(lifecycle_xml.render(stored)), content_type="application/xml")


async def delete_bucket_lifecycle(req: S3Request) -> web.Response:
    if owned_bucket(req).get("lifecycle"):
        await req.gateway.buckets.configure(req.bucket, {"lifecycle": None})
    return web.Response(status=204)


def expiration_headers(req: S3Request, record: dict) -> dict[str, str]:
    """`x-amz-expiration` for an object a rule of its bucket will expire, else nothing."""
    bucket = req.gateway.buckets.get(record["bucket"]) or {}
    if not bucket.get("lifecycle"):
        return {}
    hit = rules.current_expiry(bucket["lifecycle"], record["key"], record["size"], record.get("tags"),
                               record["created"], req.gateway.cfg.lifecycle.day_seconds)
    if hit is None:
        return {}
    return {"x-amz-expiration": f'expiry-date="{xml.http_date(hit.at)}", rule-id="{hit.rule_id}"'}
