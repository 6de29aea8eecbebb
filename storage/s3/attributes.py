"""GetObjectAttributes: `GET /bucket/key?attributes` with `x-amz-object-attributes`.

Answers from the index record alone (no fragment is read): ETag, Checksum (the
x-amz-checksum-* the object was stored with, and its type), ObjectParts (a multipart
object's parts with their checksums, paged with x-amz-max-parts and x-amz-part-number-marker), StorageClass and ObjectSize.
"""
from __future__ import annotations

from aiohttp import web

from ..index import parts as P
from ..numbers import decimal
from . import errors, sse, xml
from .multipart_checksums import type_of, xml_fields
from .names import check_key
from .request import S3Request
from .versioning import readable_version, requested_version, version_headers
from .xml import http_date

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_PARTS = 1000


def _requested(req: S3Request) -> set[str]:
    values = [v.strip() for header in req.headers.getall("x-amz-object-attributes", [])
              for v in header.split(",") if v.strip()]
    if not values:
        raise errors.InvalidArgument("The x-amz-object-attributes header specifying the attributes to be "
                                     "retrieved is either missing or empty",
                                     ArgumentName="x-amz-object-attributes")
    for value in values:
        if value not in ATTRIBUTES:
            raise errors.InvalidArgument("Invalid attribute name specified.",
                                         ArgumentName="x-amz-object-attributes", ArgumentValue=value)
    return set(values)


def _number(req: S3Request, header: str, default: int) -> int:
    value = req.headers.get(header)
    if value is None:
        return default
    number = decimal(value)
    if number is None:
        raise errors.InvalidArgument(f"{header} must be a non-negative integer", ArgumentName=header,
                                     ArgumentValue=value)
    return number


def _object_parts(req: S3Request, record: dict):
    limit = min(_number(req, "x-amz-max-parts", MAX_PARTS), MAX_PARTS)
    marker = _number(req, "x-amz-part-number-marker", 0)
    after = [p for p in record["parts"] if p["number"] > marker]
    page = after[:limit]
    fields = [("PartsCount", len(record["parts"])), ("PartNumberMarker", marker)]
    if page:
        fields.append(("NextPartNumberMarker", page[-1]["number"]))
    fields += [("MaxParts", limit), ("IsTruncated", "true" if len(after) > limit else "false")]
    fields += [xml.element("Part", [("PartNumber", p["number"]), ("Size", p["size"]), *xml_fields(p.get("checksums"))]) for p in page]
    return xml.element("ObjectParts", fields)


async def get_object_attributes(req: S3Request) -> web.Response:
    check_key(req.key)
    bucket, record = await readable_version(req, version_id=requested_version(req))
    sse.key_to_read(req, record)   # S3 asks an SSE-C object's key here too
    wanted = _requested(req)
    fields = []
    if "ETag" in wanted:
        fields.append(("ETag", record["etag"]))
    checksums = record.get("checksums") or {}
    if "Checksum" in wanted and checksums:
        fields.append(xml.element("Checksum", [*xml_fields(checksums), ("ChecksumType", type_of(record))]))
    if "ObjectParts" in wanted and P.is_multipart(record):
        fields.append(_object_parts(req, record))
    if "StorageClass" in wanted:
        fields.append(("StorageClass", "STANDARD"))
    if "ObjectSize" in wanted:
        fields.append(("ObjectSize", record["size"]))
    return web.Response(body=xml.document(xml.element("GetObjectAttributesResponse", fields)),
                        headers={"Last-Modified": http_date(record["created"]), **version_headers(bucket, record)},
                        content_type="application/xml")
