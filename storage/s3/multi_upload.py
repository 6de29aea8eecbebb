"""Multipart upload operations: Create, UploadPart(Copy), Complete, Abort, ListParts, ListMultipartUploads.

The handlers parse and check the request and render S3's XML; what the operations mean
(parts stored like object versions, Complete copying no data) is objects/multipart.py.
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager

from aiohttp import web

from ..index.uploads import NoSuchUpload
from ..index import parts as P
from ..objects.multipart import InvalidPart, PartTooSmall
from ..numbers import decimal
from . import acl, conditions, errors, lifecycle, multipart_checksums as MC, object_lock, sse, tagging, xml
from .access import owned_bucket
from .digests import BodyDigests
from .listing import _encoder
from .names import MAX_PART_NUMBER, check_key, check_part_number, content_type, user_metadata
from .body import MAX_PUT_BYTES, open_body, read_small, stored_headers
from .copy import read_source, readable_source, source_version_header
from .request import S3Request
from .versioning import new_version_fields, version_headers

log = logging.getLogger("pocket.s3")

MAX_COMPLETE_BODY = 4 << 20  # 10,000 <Part> elements fit with room to spare
_COPY_RANGE = re.compile(r"^bytes=([0-9]+)-([0-9]+)$")


@contextmanager
def _s3_errors(req: S3Request, upload_id: str):
    """The multipart service's refusals, as S3 errors."""
    try:
        yield
    except NoSuchUpload:
        raise errors.NoSuchUpload(resource=req.resource, UploadId=upload_id) from None
    except InvalidPart as e:
        raise errors.InvalidPart(resource=req.resource, UploadId=upload_id, PartNumber=str(e.number),
                                 ETag=e.etag) from None
    except PartTooSmall as e:
        raise errors.EntityTooSmall(resource=req.resource, ProposedSize=str(e.size),
                                    MinSizeAllowed=str(P.MIN_PART_SIZE), PartNumber=str(e.number),
                                    ETag=e.etag) from None


async def _upload(req: S3Request) -> dict:
    owned_bucket(req)
    check_key(req.key)
    upload_id = req.query.get("uploadId", "")
    with _s3_errors(req, upload_id):
        return await req.gateway.index.call(req.gateway.multipart.get, req.bucket, req.key, upload_id)


async def create_upload(req: S3Request) -> web.Response:
    bucket = owned_bucket(req)
    check_key(req.key)
    sealing = sse.for_new_object(req, bucket)
    attrs = {
        "content_type": content_type(req.headers),
        "meta": user_metadata(req.headers),
        "headers": stored_headers(req.headers),
        **acl.new_object(req, bucket),
        **object_lock.put_fields(req, bucket),
    }
    tags = tagging.from_header(req.headers.get("x-amz-tagging"))   # checked now, land on the completed object
    if tags:
        attrs["tags"] = tags
    if sealing:   # each part gets its own data key; the upload keeps how (and SSE-C: a MAC of the key)
        attrs["sse"] = sealing.summary(req.gateway.objects.keys)
    checksum = MC.declared(req.headers)
    upload = await req.gateway.multipart.create(req.bucket, req.key, attrs, checksum=checksum)
    return _xml(xml.element("InitiateMultipartUploadResult", [
        ("Bucket", req.bucket), ("Key", req.key), ("UploadId", upload["upload_id"])]),
        {**MC.headers(checksum), **sse.response_headers(req, attrs), **sse.context_header(attrs)})


async def upload_part(req: S3Request) -> web.Response:
    number = check_part_number(req.query.get("partNumber"))
    upload = await _upload(req)
    if "x-amz-copy-source" in req.headers:
        return await _upload_part_copy(req, upload, number)
    sealing = sse.for_part(req, upload)
    body = open_body(req)
    MC.check_part(upload.get("checksum"), body.digests)
    with _s3_errors(req, upload["upload_id"]):
        record = await req.gateway.multipart.upload_part(upload, number, body.stream, body.length, body.digests,
                                                         sealing)
    headers = {"ETag": f'"{record["etag"]}"', **sse.response_headers(req, record)}
    headers.update({f"x-amz-checksum-{a}": v for a, v in record["checksums"].items()})
    return web.Response(headers=headers)


def _copy_range(req: S3Request, size: int) -> tuple[int, int]:
    value = req.headers.get("x-amz-copy-source-range")
    if value is None:
        return 0, size - 1
    m = _COPY_RANGE.match(value.strip())
    if not m:
        raise errors.InvalidArgument("The x-amz-copy-source-range value must be of the form bytes=first-last "
                                     "where first and last are the zero-based offsets of the first and last "
                                     "bytes to copy", ArgumentName="x-amz-copy-source-range", ArgumentValue=value)
    first, last = int(m.group(1)), int(m.group(2))
    if first <= last and last >= size:   # well-formed but past the source's end
        raise errors.InvalidRange(f"The range {value} is not within the source object's {size} bytes.",
                                  RangeRequested=value, ActualObjectSize=str(size))
    if first > last:
        raise errors.InvalidArgument(f"Range specified is not valid for source object of size: {size}",
                                     ArgumentName="x-amz-copy-source-range", ArgumentValue=value)
    return first, last


async def _upload_part_copy(req: S3Request, upload: dict, number: int) -> web.Response:
    """UploadPartCopy: stream the source (range) through the object service into a new part."""
    sealing = sse.for_part(req, upload)
    source, shown = await readable_source(req)
    first, last = _copy_range(req, source["size"])
    length = last - first + 1
    if length > MAX_PUT_BYTES:
        raise errors.EntityTooLarge(f"A part may be at most 5 GiB; this copy is {length} bytes.",
                                    ProposedSize=str(length), MaxSizeAllowed=str(MAX_PUT_BYTES))
    digests = BodyDigests({}, length, None)
    if upload.get("checksum"):  # the bytes come from us: compute the checksum the upload declared
        digests.compute(upload["checksum"]["algorithm"])
    with _s3_errors(req, upload["upload_id"]):
        record = await req.gateway.multipart.upload_part(upload, number, read_source(req, source, first, last),
                                                         length, digests, sealing)
    response = _xml(xml.element("CopyPartResult", [
        ("LastModified", xml.iso8601(record["created"])), ("ETag", f'"{record["etag"]}"'),
        *MC.xml_fields(record.get("checksums"))]))
    response.headers.update(source_version_header(shown))
    response.headers.update(sse.response_headers(req, record))
    return response


def parse_complete(body: bytes) -> tuple[list[tuple[int, str]], dict[int, dict[str, str]]]:
    """(part number, ETag) pairs of a CompleteMultipartUpload body, checked for order, and
    the checksums listed for each part ({number: {algorithm: base64}})."""
    root = xml.parse(body)
    if root is None or root.tag != "CompleteMultipartUpload":
        raise errors.MalformedXML()
    wanted, checksums = [], {}
    for el in root:
        if el.tag != "Part":
            continue
        number, etag = (el.findtext("PartNumber") or "").strip(), el.findtext("ETag")
        part_number = decimal(number)
        if part_number is None or etag is None:
            raise errors.MalformedXML()
        wanted.append((part_number, etag.strip().strip('"').lower()))
        checksums[part_number] = MC.from_part_element(el)
    if not wanted:
        raise errors.MalformedXML("You must specify at least one part")
    if any(b[0] <= a[0] for a, b in zip(wanted, wanted[1:])):
        raise errors.InvalidPartOrder()
    return wanted, checksums


async def complete_upload(req: S3Request) -> web.Response:
    bucket = owned_bucket(req)
    check_key(req.key)
    upload_id = req.query.get("uploadId", "")
    wanted, listed = parse_complete(await read_small(req, MAX_COMPLETE_BODY, body_checksums=False))
    service = req.gateway.multipart
    condition = conditions.write_condition(req.headers, req.resource, req.key)
    with _s3_errors(req, upload_id):
        try:
            upload = await req.gateway.index.call(service.get, req.bucket, req.key, upload_id)
        except NoSuchUpload:
            record = await service.completed(req.bucket, req.key, upload_id)  # a retry of a Complete that worked
            if record is None:
                raise
        else:
            checksum = upload.get("checksum")
            MC.check_complete(checksum, listed, req.headers)
            if condition:   # fail fast; the same check runs again atomically with the commit
                condition(await req.gateway.objects.head(req.bucket, req.key))
            record = await service.complete(upload, wanted, listed,
                                            lambda chosen: MC.of_object(checksum, chosen, req.headers),
                                            versioned=bool(new_version_fields(bucket)), condition=condition)
    location = f"{req.http.scheme}://{req.http.host}/{req.bucket}/{req.key}"
    fields = [("Location", location), ("Bucket", req.bucket), ("Key", req.key), ("ETag", f'"{record["etag"]}"'),
              *MC.xml_fields(record.get("checksums"))]
    if record.get("checksums"):
        fields.append(("ChecksumType", MC.type_of(record)))
    response = _xml(xml.element("CompleteMultipartUploadResult", fields), lifecycle.expiration_headers(req, record))
    response.headers.update(version_headers(bucket, record))
    response.headers.update(sse.response_headers(req, record))
    return response


async def abort_upload(req: S3Request) -> web.Response:
    upload = await _upload(req)
    with _s3_errors(req, upload["upload_id"]):
        await req.gateway.multipart.abort(upload)
    return web.Response(status=204)


def _int_param(req: S3Request, name: str, default: int, cap: int) -> int:
    value = req.query.get(name, str(default))
    number = decimal(value)
    if number is None:
        raise errors.InvalidArgument(f"{name} must be a non-negative integer", ArgumentName=name, ArgumentValue=value)
    return min(number, cap)


def _person(tag: str, owner: str):
    return xml.element(tag, [("ID", owner), ("DisplayName", owner)])


async def list_parts(req: S3Request) -> web.Response:
    upload = await _upload(req)
    marker = _int_param(req, "part-number-marker", 0, MAX_PART_NUMBER)
    max_parts = _int_param(req, "max-parts", 1000, 1000)
    stored, truncated = await req.gateway.index.call(req.gateway.multipart.list_parts, upload, marker, max_parts)
    owner = upload["attrs"].get("owner", "")
    fields = [("Bucket", req.bucket), ("Key", req.key), ("UploadId", upload["upload_id"]),
              _person("Initiator", owner), _person("Owner", owner), ("StorageClass", "STANDARD"),
              ("PartNumberMarker", marker),
              ("NextPartNumberMarker", stored[-1]["part_number"] if stored else marker),
              ("MaxParts", max_parts), ("IsTruncated", "true" if truncated else "false")]
    checksum = upload.get("checksum")
    if checksum:
        fields += [("ChecksumAlgorithm", checksum["algorithm"].upper()), ("ChecksumType", checksum["type"])]
    fields += [xml.element("Part", [("PartNumber", p["part_number"]), ("LastModified", xml.iso8601(p["created"])),
                                    ("ETag", f'"{p["etag"]}"'), ("Size", p["size"]),
                                    *MC.xml_fields(p.get("checksums"))]) for p in stored]
    return _xml(xml.element("ListPartsResult", fields))


async def list_uploads(req: S3Request) -> web.Response:
    owned_bucket(req)
    enc = _encoder(req)
    q = req.query
    max_uploads = _int_param(req, "max-uploads", 1000, 1000)
    page = await req.gateway.index.call(
        req.gateway.multipart.list_uploads, req.bucket, prefix=q.get("prefix", ""), delimiter=q.get("delimiter", ""),
        key_marker=q.get("key-marker", ""), upload_id_marker=q.get("upload-id-marker", ""),
        max_uploads=max_uploads)
    fields = [("Bucket", req.bucket), ("KeyMarker", enc(q.get("key-marker", ""))),
              ("UploadIdMarker", q.get("upload-id-marker", "")),
              ("NextKeyMarker", enc(page.next_key_marker)), ("NextUploadIdMarker", page.next_upload_id_marker)]
    if "delimiter" in q:
        fields.append(("Delimiter", enc(q["delimiter"])))
    fields += [("Prefix", enc(q.get("prefix", ""))), ("MaxUploads", max_uploads),
               ("IsTruncated", "true" if page.is_truncated else "false")]
    if "encoding-type" in q:
        fields.append(("EncodingType", "url"))
    for u in page.uploads:
        owner = u["attrs"].get("owner", "")
        fields.append(xml.element("Upload", [
            ("Key", enc(u["key"])), ("UploadId", u["upload_id"]), _person("Initiator", owner),
            _person("Owner", owner), ("StorageClass", "STANDARD"), ("Initiated", xml.iso8601(u["initiated"]))]))
    fields += [xml.element("CommonPrefixes", [("Prefix", enc(p))]) for p in page.common_prefixes]
    return _xml(xml.element("ListMultipartUploadsResult", fields))


def _xml(root, headers: dict | None = None) -> web.Response:
    return web.Response(body=xml.document(root), content_type="application/xml", headers=headers)
