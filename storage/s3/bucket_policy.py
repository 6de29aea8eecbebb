"""Bucket policies: Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus.

The policy text is checked (policy/document.py) and kept as sent in the bucket's record
(a bucket-config record on the disks, so `pocket index rebuild` keeps it); access.py
evaluates it on every request to the bucket.
"""
from __future__ import annotations

from aiohttp import web

from . import bucket_config, errors, xml
from .access import owned_bucket
from .body import read_small
from .policy import document
from .request import S3Request


async def put_bucket_policy(req: S3Request) -> web.Response:
    record = owned_bucket(req)
    body = await read_small(req, document.MAX_BYTES + 1)
    try:
        text = body.decode("utf-8")
        statements = document.parse(text, req.bucket)
    except UnicodeDecodeError:
        raise errors.MalformedPolicy("Policies must be UTF-8 JSON", resource=req.bucket) from None
    except document.MalformedPolicy as e:
        raise errors.MalformedPolicy(str(e), resource=req.bucket) from None
    if (record.get("public_access_block") or {}).get("BlockPublicPolicy") and document.is_public(statements):
        raise errors.AccessDenied("PublicAccessBlock on this bucket blocks public policies (BlockPublicPolicy); "
                                  "pin the policy's Allow to principals or source addresses, or change the block.")
    await req.gateway.buckets.configure(req.bucket, {"policy": text})
    return web.Response(status=204)


async def get_bucket_policy(req: S3Request) -> web.Response:
    policy = owned_bucket(req).get("policy")
    if not policy:
        raise errors.NoSuchBucketPolicy(resource=req.bucket, BucketName=req.bucket)
    return web.Response(body=policy.encode(), content_type="application/json")


async def delete_bucket_policy(req: S3Request) -> web.Response:
    return await bucket_config.remove(req, "policy")


async def get_bucket_policy_status(req: S3Request) -> web.Response:
    policy = owned_bucket(req).get("policy")
    if not policy:
        raise errors.NoSuchBucketPolicy(resource=req.bucket, BucketName=req.bucket)
    public = document.is_public(document.parse(policy, req.bucket))
    body = xml.element("PolicyStatus", [("IsPublic", "true" if public else "false")])
    return web.Response(body=xml.document(body), content_type="application/xml")
