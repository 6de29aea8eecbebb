"""ListObjects (V1) and ListObjectsV2: one page from the object service, two XML dialects."""
from __future__ import annotations

import base64
import binascii
from urllib.parse import quote

from aiohttp import web

from ..numbers import decimal
from . import errors, xml, xmltext
from .access import readable_bucket
from .request import S3Request


def _max_keys(req: S3Request) -> int:
    value = req.query.get("max-keys", "1000")
    n = decimal(value)
    if n is None:
        raise errors.InvalidArgument("max-keys must be a non-negative integer", ArgumentName="max-keys",
                                     ArgumentValue=value)
    return min(n, 1000)


def _encoder(req: S3Request):
    kind = req.query.get("encoding-type")
    if kind is None:
        return lambda s: s
    if kind != "url":
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request", ArgumentName="encoding-type",
                                     ArgumentValue=kind)
    return lambda s: quote(s, safe="/")


async def _page(req: S3Request, start_after: str):
    readable_bucket(req)
    return await req.gateway.objects.list_objects(req.bucket, prefix=req.query.get("prefix", ""),
                                            delimiter=req.query.get("delimiter", ""),
                                            start_after=start_after, max_keys=_max_keys(req))


def _entries(req: S3Request, page, enc, owner: bool) -> list[str]:
    """Contents and CommonPrefixes rendered as text, as xml.leaf and xml.branch would: a
    page holds up to 1,000, and a call per field was a third of the page's rendering.

    What the index hands back cannot hold the lone surrogates that xml.escaped guards
    against (keys are decoded from UTF-8, records parsed by orjson), so the fields are
    only escaped; one encode of the whole page checks that, and a page that ever failed
    it is rendered again field by field. Escaping with its regex per field was 13 % of a
    page's CPU (py-spy)."""
    out = _rendered(page, enc, owner, xmltext.escape)
    try:
        "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        out = _rendered(page, enc, owner, xml.escaped)
    return out


def _rendered(page, enc, owner: bool, text) -> list[str]:
    iso = xml.iso8601
    out = []
    for key, rec in page.contents:
        owned = ""
        if owner:
            name = text(rec.get("owner", ""))
            owned = (f"<Owner><ID>{name}</ID><DisplayName>{name}</DisplayName></Owner>" if name
                     else "<Owner><ID /><DisplayName /></Owner>")
        # a key, an ETag in quotes, a timestamp and a size (a number) are never empty: no
        # <Tag /> forms, and nothing in a size to escape
        etag = text(f'"{rec["etag"]}"')
        out.append(f"<Contents><Key>{text(enc(key))}</Key><LastModified>{iso(rec['created'])}</LastModified>"
                   f"<ETag>{etag}</ETag><Size>{rec['size']}</Size>"
                   f"<StorageClass>STANDARD</StorageClass>{owned}</Contents>")
    out += [f"<CommonPrefixes><Prefix>{text(enc(p))}</Prefix></CommonPrefixes>" for p in page.common_prefixes]
    return out


def _render(fields: list[tuple[str, object]], entries: list[str]) -> web.Response:
    body = xml.text_document("ListBucketResult", [xml.leaf(tag, value) for tag, value in fields] + entries)
    return web.Response(body=body, content_type="application/xml")


def _common(req: S3Request, enc) -> list:
    fields = [("Name", req.bucket), ("Prefix", enc(req.query.get("prefix", "")))]
    if req.query.get("delimiter"):   # S3 leaves out an empty one, as if none was sent
        fields.append(("Delimiter", enc(req.query["delimiter"])))
    fields.append(("MaxKeys", _max_keys(req)))
    if "encoding-type" in req.query:
        fields.append(("EncodingType", "url"))
    return fields


async def list_objects_v2(req: S3Request) -> web.Response:
    if req.query.get("list-type") != "2":
        raise errors.InvalidArgument("list-type must be 2", ArgumentName="list-type")
    enc = _encoder(req)
    token = req.query.get("continuation-token")
    start = req.query.get("start-after", "")
    if token is not None:
        try:
            start = base64.urlsafe_b64decode(token.encode()).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise errors.InvalidArgument("The continuation token provided is incorrect",
                                         ArgumentName="continuation-token") from None
    page = await _page(req, start)
    fields = _common(req, enc)
    fields.append(("KeyCount", len(page.contents) + len(page.common_prefixes)))
    fields.append(("IsTruncated", "true" if page.is_truncated else "false"))
    if token is not None:
        fields.append(("ContinuationToken", token))
    if "start-after" in req.query:
        fields.append(("StartAfter", enc(req.query["start-after"])))
    if page.is_truncated:
        fields.append(("NextContinuationToken", base64.urlsafe_b64encode(page.next_marker.encode()).decode()))
    return _render(fields, _entries(req, page, enc, req.query.get("fetch-owner") == "true"))


async def list_objects_v1(req: S3Request) -> web.Response:
    enc = _encoder(req)
    marker = req.query.get("marker", "")
    page = await _page(req, marker)
    fields = _common(req, enc)
    fields.insert(2, ("Marker", enc(marker)))
    fields.append(("IsTruncated", "true" if page.is_truncated else "false"))
    if page.is_truncated and req.query.get("delimiter"):
        fields.append(("NextMarker", enc(page.next_marker)))
    return _render(fields, _entries(req, page, enc, True))
