"""Bucket logging (Get/PutBucketLogging): every bucket's server access logging is off.

Pocket does not deliver S3 server access log objects (its gateway writes an access log
of its own, `pocket.access`). GetBucketLogging answers what S3 answers for a bucket
without logging, an empty BucketLoggingStatus, rather than 501: SDKs and Terraform read
it for every bucket they manage. Turning logging off is accepted (there is nothing to
store); turning it on is checked as S3 checks it and then refused with 501, since
storing a configuration no log would ever follow would tell the caller a lie.
"""
from __future__ import annotations

from aiohttp import web

from . import errors, xml
from .access import owned_bucket
from .body import read_small
from .request import S3Request

_MAX_BODY = 64 << 10

async def get_bucket_logging(req: S3Request) -> web.Response:
    owned_bucket(req)
    return web.Response(body=xml.document(xml.element("BucketLoggingStatus")), content_type="application/xml")


async def put_bucket_logging(req: S3Request) -> web.Response:
    source = owned_bucket(req)
    root = xml.parse(await read_small(req, _MAX_BODY))
    if root is None or root.tag != "BucketLoggingStatus" or any(el.tag != "LoggingEnabled" for el in root):
        raise errors.MalformedXML()
    enabled = root.find("LoggingEnabled")
    if enabled is None:
        return web.Response()   # logging off: what every bucket already has
    target, prefix = enabled.find("TargetBucket"), enabled.find("TargetPrefix")
    if target is None or prefix is None or not (target.text or "").strip():
        raise errors.MalformedXML("LoggingEnabled needs a TargetBucket and a TargetPrefix.")
    name = target.text.strip()
    record = await req.gateway.buckets.aget(name)
    if record is None or record.get("owner") != source.get("owner"):
        raise errors.InvalidTargetBucketForLogging(
            f"The target bucket {name} does not exist or is not owned by the owner of {req.bucket}.",
            resource=f"/{req.bucket}", TargetBucket=name)
    raise errors.NotImplementedError_("Pocket does not deliver server access logs to a bucket; the gateway's own "
                                      "access log (pocket.access) records every request.")
