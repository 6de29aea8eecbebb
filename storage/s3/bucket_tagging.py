"""Bucket tagging: Put/Get/DeleteBucketTagging (cost allocation tags, as AWS keeps them).

S3 allows up to 50 tags on a bucket (10 on an object), with the same key and value
rules; a bucket without tags answers NoSuchTagSet. The tags are a bucket-config change
like CORS rules, recorded on the disks first, so an index rebuild keeps them.
"""
from __future__ import annotations

from aiohttp import web

from . import errors, tagging, xml
from .access import owned_bucket
from .body import read_small
from .request import S3Request

MAX_BUCKET_TAGS = 50
_MAX_BODY = 64 << 10


async def put_bucket_tagging(req: S3Request) -> web.Response:
    owned_bucket(req)
    pairs = tagging.pairs_from_xml(await read_small(req, _MAX_BODY))
    tags = tagging.validate(pairs, max_tags=MAX_BUCKET_TAGS)
    if await req.gateway.buckets.configure(req.bucket, {"tags": tags or None}) is None:
        raise errors.NoSuchBucket(resource=req.bucket, BucketName=req.bucket)
    return web.Response(status=204)


async def get_bucket_tagging(req: S3Request) -> web.Response:
    tags = owned_bucket(req).get("tags")
    if not tags:
        raise errors.NoSuchTagSet(resource=req.bucket, BucketName=req.bucket)
    return web.Response(body=xml.document(tagging.render(tags)), content_type="application/xml")


async def delete_bucket_tagging(req: S3Request) -> web.Response:
    if owned_bucket(req).get("tags"):
        await req.gateway.buckets.configure(req.bucket, {"tags": None})
    return web.Response(status=204)
