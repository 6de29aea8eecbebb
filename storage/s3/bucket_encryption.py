"""Bucket default encryption: Put/Get/DeleteBucketEncryption.

A bucket setting like CORS and lifecycle: kept in the bucket record under "encryption"
(`{"algorithm", "kms_key_id", "bucket_key"}`) and first as a bucket-config record on the
disks, so `pocket index rebuild` recovers it. A PUT, copy or multipart upload that names
no encryption of its own is encrypted this way (sse.py); one that names one keeps its own.
"""
from __future__ import annotations

from aiohttp import web

from ..crypto.keys import SSE_KMS, SSE_S3, KeyUnavailable
from . import bucket_config, errors, xml
from .access import owned_bucket
from .body import read_small
from .request import S3Request

_MAX_BODY = 64 << 10


def parse(body: bytes) -> dict:
    root = xml.parse(body)
    if root is None or root.tag != "ServerSideEncryptionConfiguration":
        raise errors.MalformedXML()
    rules = [el for el in root if el.tag == "Rule"]
    if len(rules) != 1 or len(root) != 1:
        raise errors.MalformedXML("A ServerSideEncryptionConfiguration holds exactly one Rule.")
    rule, found = rules[0], {}
    for el in rule:
        if el.tag == "ApplyServerSideEncryptionByDefault":
            for child in el:
                if child.tag not in ("SSEAlgorithm", "KMSMasterKeyID"):
                    raise errors.MalformedXML()
                found[child.tag] = (child.text or "").strip()
        elif el.tag == "BucketKeyEnabled":
            value = (el.text or "").strip().lower()
            if value not in ("true", "false"):
                raise errors.MalformedXML("BucketKeyEnabled is true or false.")
            found["bucket_key"] = value == "true"
        else:
            raise errors.MalformedXML()
    algorithm = found.get("SSEAlgorithm")
    if algorithm == "aws:kms:dsse":
        algorithm = SSE_KMS
    if algorithm not in (SSE_S3, SSE_KMS):
        raise errors.MalformedXML("SSEAlgorithm must be AES256 or aws:kms.")
    if found.get("KMSMasterKeyID") and algorithm != SSE_KMS:
        raise errors.InvalidArgument("a KMSMasterKeyID is only allowed with SSEAlgorithm aws:kms",
                                     ArgumentName="KMSMasterKeyID", ArgumentValue=found["KMSMasterKeyID"])
    config = {"algorithm": algorithm}
    if found.get("KMSMasterKeyID"):
        config["kms_key_id"] = found["KMSMasterKeyID"]
    if found.get("bucket_key"):
        config["bucket_key"] = True
    return config


async def put_bucket_encryption(req: S3Request) -> web.Response:
    owned_bucket(req)
    config = parse(await read_small(req, _MAX_BODY))
    try:   # refuse a key that is not configured now, not at the next PUT
        req.gateway.objects.keys.kms_key_name(config.get("kms_key_id", ""))
    except KeyUnavailable as e:
        raise errors.KMSNotFound(f"{e}.") from None
    return await bucket_config.store(req, "encryption", config)


async def get_bucket_encryption(req: S3Request) -> web.Response:
    config = bucket_config.stored(req, "encryption", errors.ServerSideEncryptionConfigurationNotFoundError)
    default = [("SSEAlgorithm", config["algorithm"])]
    if config.get("kms_key_id"):
        default.append(("KMSMasterKeyID", config["kms_key_id"]))
    rule = xml.element("Rule", [xml.element("ApplyServerSideEncryptionByDefault", default),
                                ("BucketKeyEnabled", "true" if config.get("bucket_key") else "false")])
    return web.Response(body=xml.document(xml.element("ServerSideEncryptionConfiguration", [rule])),
                        content_type="application/xml")


async def delete_bucket_encryption(req: S3Request) -> web.Response:
    return await bucket_config.remove(req, "encryption")
