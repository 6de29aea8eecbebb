"""Object operations: PUT, GET (with Range), HEAD, DELETE."""
from __future__ import annotations

import logging
import re

from aiohttp import web

from ..index import parts
from ..objects import locks
from ..crypto.keys import KeyUnavailable
from ..objects.get import Unreadable
from . import acl, conditions, copy, errors, lifecycle, multipart_checksums, object_lock, sse, tagging, versioning
from .body import open_body, stored_headers
from .access import owned_bucket
from .names import check_key, check_part_number, content_type, header_text, mail_safe, user_metadata
from .request import S3Request
from .xml import http_date

log = logging.getLogger("pocket.s3")

_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
_OVERRIDES = {"response-content-type": "Content-Type", "response-content-language": "Content-Language",
              "response-expires": "Expires", "response-cache-control": "Cache-Control",
              "response-content-disposition": "Content-Disposition",
              "response-content-encoding": "Content-Encoding"}


async def put_object(req: S3Request) -> web.Response:
    if "x-amz-copy-source" in req.headers:
        return await copy.copy_object(req)
    bucket = owned_bucket(req)
    check_key(req.key)
    sealing = sse.for_new_object(req, bucket)
    body = open_body(req)
    attrs = {
        "content_type": content_type(req.headers),
        "meta": user_metadata(req.headers),
        "headers": stored_headers(req.headers),
        **acl.new_object(req, bucket),
        **versioning.new_version_fields(bucket),
        **object_lock.put_fields(req, bucket),
    }
    tags = tagging.from_header(req.headers.get("x-amz-tagging"))
    if tags:
        attrs["tags"] = tags
    condition = conditions.write_condition(req.headers, req.resource, req.key)
    if condition:  # fail fast here; the same check runs again atomically with the commit
        condition(await req.gateway.objects.head(req.bucket, req.key))
    record = await req.gateway.objects.put(req.bucket, req.key, body.stream, body.length, body.digests, attrs,
                                           condition=condition, sealing=sealing)
    headers = {"ETag": f'"{record["etag"]}"', **versioning.version_headers(bucket, record),
               **sse.response_headers(req, record), **sse.context_header(record)}
    headers.update({f"x-amz-checksum-{a}": v for a, v in record["checksums"].items()})
    headers.update(lifecycle.expiration_headers(req, record))
    return web.Response(headers=headers)


async def _object(req: S3Request) -> tuple[dict, dict]:
    return await versioning.readable_version(req, version_id=versioning.requested_version(req))


def _headers(req: S3Request, bucket: dict, record: dict, span) -> dict:
    """Response headers of a GET or HEAD of `span` (None: the whole object)."""
    headers = {
        "ETag": f'"{record["etag"]}"',
        "Last-Modified": http_date(record["created"]),
        "Content-Type": record.get("content_type", "binary/octet-stream"),
        "Accept-Ranges": "bytes",
        **versioning.version_headers(bucket, record),
        **sse.response_headers(req, record),
    }
    headers.update(record.get("headers", {}))
    headers.update({f"x-amz-meta-{k}": mail_safe(v) for k, v in record.get("meta", {}).items()})
    headers.update(tagging.count_header(record))
    headers.update(object_lock.headers(record))
    headers.update(_checksum_headers(req, record, span))
    headers.update(lifecycle.expiration_headers(req, record))
    headers.update(_overrides(req))
    return headers


def _overrides(req: S3Request) -> dict:
    """response-content-type and friends: only for signed requests, as S3 has it (anyone
    could otherwise make a public object answer as text/html with their own headers)."""
    asked = {header: header_text(param, req.query[param]) for param, header in _OVERRIDES.items()
             if param in req.query}
    if asked and req.auth is None:
        raise errors.InvalidRequest("Request specific response headers cannot be used for anonymous GET requests.")
    return asked


def _checksum_headers(req: S3Request, record: dict, span) -> dict:
    """With x-amz-checksum-mode: ENABLED, the checksum of what is sent: the object's, or
    with ?partNumber= that part's. A byte range gets none (no checksum describes it)."""
    if req.headers.get("x-amz-checksum-mode", "").upper() != "ENABLED":
        return {}
    if "partNumber" in req.query and parts.is_multipart(record):
        part = record["parts"][int(req.query["partNumber"]) - 1]
        return {f"x-amz-checksum-{a}": v for a, v in (part.get("checksums") or {}).items()}
    if span is not None and "partNumber" not in req.query:
        return {}
    checksums = record.get("checksums") or {}
    headers = {f"x-amz-checksum-{a}": v for a, v in checksums.items()}
    if checksums:
        headers["x-amz-checksum-type"] = multipart_checksums.type_of(record)
    return headers


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive, or None for the whole object; raises InvalidRange."""
    if not value:
        return None
    m = _RANGE.match(value.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # not a single byte range: S3 ignores it and sends everything
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise errors.InvalidRange(RangeRequested=value, ActualObjectSize=str(size))
        return max(0, size - suffix), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise errors.InvalidRange(RangeRequested=value, ActualObjectSize=str(size))
    return start, end


def requested_span(req: S3Request, record: dict) -> tuple[tuple[int, int] | None, dict]:
    """The bytes a GET/HEAD asks for (Range, or ?partNumber= as S3 does it) and headers to add."""
    if "partNumber" not in req.query:
        return parse_range(req.headers.get("Range"), record["size"]), {}
    if req.headers.get("Range"):
        raise errors.InvalidRequest("Cannot specify both Range header and partNumber query parameter")
    number = check_part_number(req.query["partNumber"])
    count = parts.parts_count(record)
    span = parts.part_range(record, number)
    if span is None:
        # S3-compatible stores (and the conformance suites) answer 400 InvalidPart here
        raise errors.InvalidPart(f"Part number {number} is not in this object; it has {count or 1} part(s).",
                                 PartNumberRequested=str(number), ActualPartCount=str(count or 1))
    extra = {"x-amz-mp-parts-count": str(count)} if count else {}
    return (span if span[1] >= span[0] else None), extra


def _not_modified(bucket: dict, record: dict) -> web.Response:
    return web.Response(status=304, headers={"ETag": f'"{record["etag"]}"',
                                             "Last-Modified": http_date(record["created"]),
                                             **versioning.version_headers(bucket, record)})


async def head_object(req: S3Request) -> web.Response:
    sse.refuse_sealing_on_read(req)
    bucket, record = await _object(req)
    sse.key_to_read(req, record)
    if conditions.check_read(req.headers, record) == conditions.NOT_MODIFIED:
        return _not_modified(bucket, record)
    span, extra = requested_span(req, record)
    headers = _headers(req, bucket, record, span)
    headers.update(extra)
    if span:
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{record['size']}"
        headers["Content-Length"] = str(span[1] - span[0] + 1)
        return web.Response(status=206, headers=headers)
    headers["Content-Length"] = str(record["size"])
    return web.Response(headers=headers)


_TOO_FEW = "Too few fragments of this object are readable right now; retry once the disks are back."


async def get_object(req: S3Request) -> web.StreamResponse:
    sse.refuse_sealing_on_read(req)
    bucket, record = await _object(req)
    customer_key = sse.key_to_read(req, record)
    if conditions.check_read(req.headers, record) == conditions.NOT_MODIFIED:
        return _not_modified(bucket, record)
    size = record["size"]
    span, extra = requested_span(req, record)
    headers = _headers(req, bucket, record, span)
    headers.update(extra)
    status = 200
    start, end = 0, size - 1
    if span:
        status, (start, end) = 206, span
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    stream = req.gateway.objects.read(record, start, end, req.gateway.report_damage, customer_key)
    try:
        first = await anext(stream, b"")
    except KeyUnavailable as e:
        log.error("GET %s: %s", req.resource, e)
        raise errors.ServiceUnavailable(f"The key this object was encrypted with is not available: {e}") from e
    except Unreadable as e:
        log.error("GET %s: %s", req.resource, e)
        raise errors.ServiceUnavailable(_TOO_FEW) from e
    if len(first) == end - start + 1:
        return await _whole(req, stream, status, headers, first)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = end - start + 1
    await resp.prepare(req.http)
    try:
        if first:
            await resp.write(first)
        async for chunk in stream:
            await resp.write(chunk)
    except Unreadable as e:
        # Headers are gone already: cut the connection so the client sees a short body, not bad data.
        log.error("GET %s failed after the first byte: %s", req.resource, e)
        req.http.transport and req.http.transport.close()
        return resp
    except ConnectionError:
        # The client hung up mid-body (it stopped a download, or timed out): nothing is wrong
        # here and nobody is left to answer. The access line shows the bytes it got; this was
        # a logged 500 with a traceback, which 5xx alerts counted as the gateway failing.
        return resp
    await resp.write_eof()
    return resp


async def _whole(req: S3Request, stream, status: int, headers: dict, first) -> web.Response:
    """The answer when its first piece is all of it (small objects and ranges): headers
    and body leave in one socket write instead of two, a sixth of a 4 KiB GET's CPU
    (py-spy), and a read that fails at its end still gets a proper 503."""
    parts = [first]
    try:
        async for rest in stream:   # nothing is left: this runs the reader's end-of-stream checks
            parts.append(rest)
    except Unreadable as e:
        log.error("GET %s: %s", req.resource, e)
        raise errors.ServiceUnavailable(_TOO_FEW) from e
    return web.Response(status=status, headers=headers, body=b"".join(parts))


async def delete_object(req: S3Request) -> web.Response:
    bucket = owned_bucket(req)
    check_key(req.key)
    version_id = versioning.requested_version(req)
    if version_id is None or (version_id == versioning.NULL and not bucket.get("versioning")):
        removed = await req.gateway.objects.delete(req.bucket, req.key, owner=req.access_key)
        return web.Response(status=204, headers=versioning.version_headers(bucket, removed) if removed else {})
    try:
        removed = await req.gateway.objects.delete_version(req.bucket, req.key, version_id,
                                                           bypass_governance=object_lock.bypass(req))
    except locks.ObjectLocked as e:
        raise errors.AccessDenied(object_lock.LOCKED, resource=req.resource) from e
    if removed is None:
        # S3 answers a delete of a version that is not there (any more) with success and
        # the id echoed: deletes are idempotent, a retried one must not fail.
        return web.Response(status=204, headers={"x-amz-version-id": version_id})
    return web.Response(status=204, headers=versioning.version_headers(bucket, removed))
