"""CopyObject: `PUT /bucket/key` with `x-amz-copy-source: /srcbucket/srckey`.

The copy streams the source through `ObjectService.read` into `ObjectService.put`,
segment by segment, so memory stays bounded whatever the size. The source's MD5 (its
ETag, for a single-part object) and its x-amz-checksum, if it has one, are declared
to the new upload's `BodyDigests`, so a copy that read back anything but the source's
bytes fails instead of storing them.

Metadata: `x-amz-metadata-directive: COPY` (the default) keeps the source's content
type, user metadata and standard headers; `REPLACE` takes them from this request.
Tags follow `x-amz-tagging-directive` the same way. Copying an object onto itself
without REPLACE changes nothing and is refused, as S3 does.
"""
from __future__ import annotations

import base64
import logging
from urllib.parse import unquote

from aiohttp import web

from ..crypto.keys import SSE_S3
from ..objects.get import Unreadable
from ..index.versions import valid_version_id
from . import access, acl, conditions, errors, lifecycle, multipart_checksums, object_lock, sse, tagging, versioning, xml
from .access import owned_bucket
from .body import MAX_PUT_BYTES, stored_headers
from .digests import BodyDigests
from .names import check_bucket_name, check_key, content_type, user_metadata
from .request import S3Request

log = logging.getLogger("pocket.s3")


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """`/bucket/key`, `bucket/key`, URL-encoded, optionally `?versionId=...`: (bucket, key, version id)."""
    raw, _, query = value.partition("?")
    bucket, _, key = unquote(raw).lstrip("/").partition("/")
    if not bucket or not key:
        raise errors.InvalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
                                     ArgumentName="x-amz-copy-source", ArgumentValue=value)
    version_id = None
    if query:
        name, _, version = query.partition("=")
        version_id = unquote(version)
        if name != "versionId" or not valid_version_id(version_id):
            raise errors.InvalidArgument("Invalid version id specified", ArgumentName="versionId",
                                         ArgumentValue=version_id)
    return bucket, key, version_id


def _directive(req: S3Request, header: str) -> str:
    value = req.headers.get(header, "COPY").upper()
    if value not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument(f"Unknown {header.split('-')[2]} directive.", ArgumentName=header,
                                     ArgumentValue=value)
    return value


async def readable_source(req: S3Request) -> tuple[dict, str | None]:
    """The record named by x-amz-copy-source (a given version of it, or the current one) if
    the caller may read it and its x-amz-copy-source-if-* conditions hold (CopyObject and
    UploadPartCopy alike); and the x-amz-copy-source-version-id header to answer with."""
    src_bucket, src_key, version_id = parse_copy_source(req.headers["x-amz-copy-source"])
    check_bucket_name(src_bucket)
    check_key(src_key)
    access.check_expected_owner(req.gateway.buckets, src_bucket, req.headers, "x-amz-source-expected-bucket-owner")
    # another user's public-read objects too
    bucket, source = await versioning.readable_version(req, src_bucket, src_key, version_id)
    sse.key_to_read(req, source, sse.COPY_CUSTOMER)   # an SSE-C source is copied only with its key
    conditions.check_copy_source(req.headers, source)
    shown = versioning.version_headers(bucket, source).get("x-amz-version-id")
    return source, shown


def source_version_header(shown: str | None) -> dict[str, str]:
    return {"x-amz-copy-source-version-id": shown} if shown else {}


async def copy_object(req: S3Request) -> web.Response:
    bucket = owned_bucket(req)
    check_key(req.key)
    metadata_directive = _directive(req, "x-amz-metadata-directive")
    tagging_directive = _directive(req, "x-amz-tagging-directive")
    sealing = sse.for_new_object(req, bucket)
    source, shown = await readable_source(req)
    current = await req.gateway.objects.head(req.bucket, req.key) if (source["bucket"], source["key"]) == (
        req.bucket, req.key) else None
    if current and current["version_id"] == source["version_id"] and metadata_directive != "REPLACE" \
            and not sse.names_encryption(req):
        raise errors.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without changing "
            "the object's metadata, storage class, website redirect location or encryption attributes.")
    if source["size"] > MAX_PUT_BYTES:
        raise errors.InvalidRequest("The specified copy source is larger than the maximum allowable size for a "
                                    f"copy source: {MAX_PUT_BYTES}")
    if metadata_directive == "REPLACE":
        attrs = {"content_type": content_type(req.headers),
                 "meta": user_metadata(req.headers), "headers": stored_headers(req.headers)}
    else:
        attrs = {"content_type": source.get("content_type", "binary/octet-stream"),
                 "meta": dict(source.get("meta", {})), "headers": dict(source.get("headers", {}))}
    tags = (tagging.from_header(req.headers.get("x-amz-tagging")) if tagging_directive == "REPLACE"
            else dict(source.get("tags") or {}))
    if tags:
        attrs["tags"] = tags
    attrs.update(acl.new_object(req, bucket))  # S3 never copies the source's ACL
    attrs.update(versioning.new_version_fields(bucket))
    attrs.update(object_lock.put_fields(req, bucket))   # S3 never copies the source's lock either
    condition = conditions.write_condition(req.headers, req.resource, req.key)
    if condition:
        condition(await req.gateway.objects.head(req.bucket, req.key))

    record = await req.gateway.objects.put(req.bucket, req.key, read_source(req, source), source["size"],
                                           _source_digests(source), attrs, condition=condition, sealing=sealing)
    result = [("LastModified", xml.iso8601(record["created"])), ("ETag", f'"{record["etag"]}"')]
    result += multipart_checksums.xml_fields(record["checksums"])
    headers = {f"x-amz-checksum-{a}": v for a, v in record["checksums"].items()}
    headers.update(lifecycle.expiration_headers(req, record))
    headers.update(versioning.version_headers(bucket, record))
    headers.update(source_version_header(shown))
    headers.update(sse.response_headers(req, record))
    headers.update(sse.context_header(record))
    return web.Response(body=xml.document(xml.element("CopyObjectResult", result)), headers=headers,
                        content_type="application/xml")


def _source_digests(source: dict) -> BodyDigests:
    """The copy is checked against the source's MD5 and full-object checksum as it streams.

    A COMPOSITE checksum (of part checksums) says nothing checkable about the bytes: the
    copy, one piece, gets that algorithm's checksum of the whole object instead."""
    composite = multipart_checksums.type_of(source) == multipart_checksums.COMPOSITE
    checksums = source.get("checksums", {})
    declared = {} if composite else {f"x-amz-checksum-{a}": v for a, v in checksums.items()}
    opaque = (source.get("sse") or {}).get("mode", SSE_S3) != SSE_S3   # SSE-C/KMS: not the MD5 either
    if "-" not in source["etag"] and not opaque:  # a multipart ETag is not the MD5 of the bytes
        declared["Content-MD5"] = base64.b64encode(bytes.fromhex(source["etag"])).decode()
    digests = BodyDigests(declared, source["size"], None)
    for algorithm in checksums if composite else ():
        digests.compute(algorithm)
    return digests


async def read_source(req: S3Request, source: dict, first: int = 0, last: int | None = None):
    """Stream a copy source (or a range of it); unreadable fragments become a 503."""
    last = source["size"] - 1 if last is None else last
    if last < first:
        return
    try:
        key = sse.key_to_read(req, source, sse.COPY_CUSTOMER)
        async for chunk in req.gateway.objects.read(source, first, last, req.gateway.report_damage, key):
            yield chunk
    except Unreadable as e:
        log.error("copy from %s/%s: %s", source["bucket"], source["key"], e)
        raise errors.ServiceUnavailable(
            "Too few fragments of the copy source are readable right now; retry once the disks are back.") from e
