"""ListObjectVersions for unversioned buckets: every object is its own "null" version.

Pocket keeps one version per key (versioning is not implemented), which S3 reports as
VersionId "null", IsLatest true. Tools that always list versions (rclone with
--s3-versions, backup tools, `aws s3api list-object-versions`) get the same range scan
as ListObjects, paged with key-marker/version-id-marker.
"""
from __future__ import annotations

from aiohttp import web

from . import errors, xml
from .acl import readable_bucket
from .listing import _encoder, _max_keys
from .request import S3Request

NULL = "null"


def _start_after(req: S3Request) -> str:
    key_marker = req.query.get("key-marker", "")
    version_marker = req.query.get("version-id-marker")
    if version_marker is not None:
        if not key_marker:
            raise errors.InvalidArgument("A version-id marker cannot be specified without a key marker.",
                                         ArgumentName="version-id-marker", ArgumentValue=version_marker)
        if version_marker != NULL:
            raise errors.InvalidArgument("Invalid version id specified", ArgumentName="version-id-marker",
                                         ArgumentValue=version_marker)
    return key_marker  # the marker key's only version is "null", so the page starts after it


async def list_object_versions(req: S3Request) -> web.Response:
    enc = _encoder(req)
    start = _start_after(req)
    readable_bucket(req)
    max_keys = _max_keys(req)
    page = req.gateway.index.list_objects(req.bucket, prefix=req.query.get("prefix", ""),
                                          delimiter=req.query.get("delimiter", ""), start_after=start,
                                          max_keys=max_keys)
    fields = [("Name", req.bucket), ("Prefix", enc(req.query.get("prefix", ""))),
              ("KeyMarker", enc(req.query.get("key-marker", ""))),
              ("VersionIdMarker", req.query.get("version-id-marker", ""))]
    if "delimiter" in req.query:
        fields.append(("Delimiter", enc(req.query["delimiter"])))
    fields.append(("MaxKeys", max_keys))
    if "encoding-type" in req.query:
        fields.append(("EncodingType", "url"))
    fields.append(("IsTruncated", "true" if page.is_truncated else "false"))
    if page.is_truncated:
        fields += [("NextKeyMarker", enc(page.next_marker)), ("NextVersionIdMarker", NULL)]
    for key, rec in page.contents:
        owner = rec.get("owner", "")
        fields.append(xml.element("Version", [
            ("Key", enc(key)), ("VersionId", NULL), ("IsLatest", "true"),
            ("LastModified", xml.iso8601(rec["created"])), ("ETag", f'"{rec["etag"]}"'), ("Size", rec["size"]),
            xml.element("Owner", [("ID", owner), ("DisplayName", owner)]), ("StorageClass", "STANDARD")]))
    fields += [xml.element("CommonPrefixes", [("Prefix", enc(p))]) for p in page.common_prefixes]
    return web.Response(body=xml.document(xml.element("ListVersionsResult", fields)),
                        content_type="application/xml")
