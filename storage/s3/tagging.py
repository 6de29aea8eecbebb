"""Object tagging: Put/Get/DeleteObjectTagging and the x-amz-tagging header of PUT/copy.

S3's limits: at most 10 tags per object, keys 1-128 and values 0-256 Unicode
characters, keys unique and not starting with `aws:`. Anything else is InvalidTag and
changes nothing.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from aiohttp import web

from . import errors, xml
from .body import read_small
from .request import S3Request
from .versioning import owned_version, requested_version, version_headers

MAX_TAGS = 10
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 256
_MAX_BODY = 64 << 10


def validate(pairs: list[tuple[str, str]], max_tags: int = MAX_TAGS) -> dict[str, str]:
    if len(pairs) > max_tags:
        raise errors.InvalidTag(f"Object tags cannot be greater than {max_tags}")
    tags: dict[str, str] = {}
    for key, value in pairs:
        if not 1 <= len(key) <= MAX_KEY_CHARS:
            raise errors.InvalidTag(f"The TagKey you have provided is invalid: keys are 1 to {MAX_KEY_CHARS} "
                                    "characters", TagKey=key)
        if len(value) > MAX_VALUE_CHARS:
            raise errors.InvalidTag(f"The TagValue you have provided is invalid: values are at most "
                                    f"{MAX_VALUE_CHARS} characters", TagKey=key)
        if key.lower().startswith("aws:"):
            raise errors.InvalidTag("Your TagKey cannot be prefixed with aws:", TagKey=key)
        if key in tags:
            raise errors.InvalidTag("Cannot provide multiple Tags with the same key", TagKey=key)
        tags[key] = value
    return tags


def from_header(value: str | None) -> dict[str, str]:
    """The x-amz-tagging header: a URL-encoded query string, `k1=v1&k2=v2`; a key without `=`
    is a tag with an empty value, as S3 reads `a=1&b` (only bytes that are not UTF-8 are refused)."""
    if not value:
        return {}
    try:
        pairs = parse_qsl(value, keep_blank_values=True, errors="strict")
    except ValueError:
        raise errors.InvalidArgument("The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded "
                                     "URL query parameters without tag name duplicates.",
                                     ArgumentName="x-amz-tagging") from None
    return validate(pairs)


def count_header(record: dict) -> dict[str, str]:
    tags = record.get("tags") or {}
    return {"x-amz-tagging-count": str(len(tags))} if tags else {}


def render(tags: dict[str, str]):
    """The <Tagging> document of an object's or a bucket's tags."""
    tag_set = xml.element("TagSet", [xml.element("Tag", [("Key", k), ("Value", v)]) for k, v in tags.items()])
    return xml.element("Tagging", [tag_set])


async def get_object_tagging(req: S3Request) -> web.Response:
    bucket, record = await owned_version(req)
    return web.Response(body=xml.document(render(record.get("tags") or {})), content_type="application/xml",
                        headers=version_headers(bucket, record))


async def put_object_tagging(req: S3Request) -> web.Response:
    bucket, record = await owned_version(req)
    tags = validate(await _parse_body(req))
    return await _set(req, bucket, record, tags, 200)


async def delete_object_tagging(req: S3Request) -> web.Response:
    bucket, record = await owned_version(req)
    return await _set(req, bucket, record, {}, 204)


async def _set(req: S3Request, bucket: dict, record: dict, tags: dict, status: int) -> web.Response:
    version_id = requested_version(req)
    if await req.gateway.objects.amend(req.bucket, req.key, "tags", {"tags": tags}, version_id) is None:
        if version_id is not None:
            raise errors.NoSuchVersion(resource=req.resource, Key=req.key, VersionId=version_id)
        raise errors.NoSuchKey(resource=req.resource, Key=req.key)
    return web.Response(status=status, headers=version_headers(bucket, record))


async def _parse_body(req: S3Request) -> list[tuple[str, str]]:
    return pairs_from_xml(await read_small(req, _MAX_BODY))


def pairs_from_xml(body: bytes) -> list[tuple[str, str]]:
    """The (key, value) pairs of a <Tagging><TagSet> document (object, bucket or POST form)."""
    root = xml.parse(body)
    if root is None or root.tag != "Tagging":
        raise errors.MalformedXML()
    tag_set = root.find("TagSet")
    if tag_set is None:
        raise errors.MalformedXML()
    pairs = []
    for tag in tag_set:
        if tag.tag != "Tag" or tag.find("Key") is None:
            raise errors.MalformedXML()
        value = tag.find("Value")
        pairs.append((tag.find("Key").text or "", "" if value is None else value.text or ""))
    return pairs
