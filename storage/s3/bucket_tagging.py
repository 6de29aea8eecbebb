"""Bucket tagging: Put/Get/DeleteBucketTagging (cost allocation tags, as AWS keeps them).

S3 allows up to 50 tags on a bucket (10 on an object), with the same key and value
rules; a bucket without tags answers NoSuchTagSet. The tags are a bucket-config change
like CORS rules, recorded on the disks first, so an index rebuild keeps them.
"""
from __future__ import annotations

from aiohttp import web

from . import bucket_config, errors, tagging
from .access import owned_bucket
from .body import read_small
from .request import S3Request

MAX_BUCKET_TAGS = 50
_MAX_BODY = 64 << 10


async def put_bucket_tagging(req: S3Request) -> web.Response:
    owned_bucket(req)
    pairs = tagging.pairs_from_xml(await read_small(req, _MAX_BODY))
    tags = tagging.validate(pairs, max_tags=MAX_BUCKET_TAGS)
    return await bucket_config.store(req, "tags", tags or None, status=204)


async def get_bucket_tagging(req: S3Request) -> web.Response:
    return bucket_config.render(req, "tags", errors.NoSuchTagSet, tagging.render)


async def delete_bucket_tagging(req: S3Request) -> web.Response:
    return await bucket_config.remove(req, "tags")
