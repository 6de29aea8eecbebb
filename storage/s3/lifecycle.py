"""Bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration and `x-amz-expiration`.

The rules are a bucket setting like CORS: stored in the bucket record under "lifecycle"
and, before the index changes, as a bucket-config record on the disks, so `pocket index
rebuild` recovers them. What they mean is storage/lifecycle/ (rules.py decides, runner.py
applies); this module and lifecycle_xml.py (the XML in and out) only speak S3.
"""
from __future__ import annotations

from aiohttp import web

from ..lifecycle import rules
from . import bucket_config, errors, lifecycle_xml, xml
from .body import read_small
from .access import owned_bucket
from .request import S3Request

_MAX_BODY = 1 << 20   # 1000 rules with tags and long prefixes fit


async def put_bucket_lifecycle(req: S3Request) -> web.Response:
    owned_bucket(req)
    return await bucket_config.store(req, "lifecycle", lifecycle_xml.parse(await read_small(req, _MAX_BODY)))


async def get_bucket_lifecycle(req: S3Request) -> web.Response:
    return bucket_config.render(req, "lifecycle", errors.NoSuchLifecycleConfiguration, lifecycle_xml.render)


async def delete_bucket_lifecycle(req: S3Request) -> web.Response:
    return await bucket_config.remove(req, "lifecycle")


def expiration_headers(req: S3Request, record: dict) -> dict[str, str]:
    """`x-amz-expiration` for an object a rule of its bucket will expire, else nothing."""
    bucket = req.gateway.buckets.get(record["bucket"]) or {}
    if not bucket.get("lifecycle"):
        return {}
    hit = rules.current_expiry(bucket["lifecycle"], record["key"], record["size"], record.get("tags"),
                               record["created"], req.gateway.cfg.lifecycle.day_seconds)
    if hit is None or hit.at > xml.LAST_HTTP_DATE:   # Days in the millions: never, in practice
        return {}
    return {"x-amz-expiration": f'expiry-date="{xml.http_date(hit.at)}", rule-id="{hit.rule_id}"'}
