"""ListObjectVersions: every version and delete marker, key order then newest first.

One merged range scan of the index (index/versions.py): keys with history list their
rows, keys never versioned their one "null" version. Paged with key-marker and
version-id-marker, as rclone --s3-versions, `aws s3api list-object-versions` and backup
tools do.
"""
from __future__ import annotations

from aiohttp import web

from ..index.versions import NULL, is_marker, valid_version_id
from . import errors, xml
from .access import readable_bucket
from .listing import _encoder, _max_keys
from .request import S3Request


def _markers(req: S3Request) -> tuple[str, str]:
    key_marker = req.query.get("key-marker", "")
    version_marker = req.query.get("version-id-marker")
    if not version_marker:   # empty is absent: clients that page from ('', '') send both empty
        return key_marker, ""
    if not key_marker:
        raise errors.InvalidArgument("A version-id marker cannot be specified without a key marker.",
                                     ArgumentName="version-id-marker", ArgumentValue=version_marker)
    if version_marker and not valid_version_id(version_marker):
        raise errors.InvalidArgument("Invalid version id specified", ArgumentName="version-id-marker",
                                     ArgumentValue=version_marker)
    return key_marker, version_marker


async def list_object_versions(req: S3Request) -> web.Response:
    enc = _encoder(req)
    key_marker, version_marker = _markers(req)
    readable_bucket(req)
    max_keys = _max_keys(req)
    page = await req.gateway.objects.list_versions(req.bucket, prefix=req.query.get("prefix", ""),
                                             delimiter=req.query.get("delimiter", ""), key_marker=key_marker,
                                             version_id_marker=version_marker, max_keys=max_keys)
    fields = [("Name", req.bucket), ("Prefix", enc(req.query.get("prefix", ""))),
              ("KeyMarker", enc(key_marker)), ("VersionIdMarker", version_marker)]
    if req.query.get("delimiter"):   # S3 leaves out an empty one, as if none was sent
        fields.append(("Delimiter", enc(req.query["delimiter"])))
    fields.append(("MaxKeys", max_keys))
    if "encoding-type" in req.query:
        fields.append(("EncodingType", "url"))
    fields.append(("IsTruncated", "true" if page.is_truncated else "false"))
    if page.is_truncated:
        fields += [("NextKeyMarker", enc(page.next_key_marker)),
                   ("NextVersionIdMarker", page.next_version_id_marker or NULL)]
    for v in page.versions:
        rec = v.record
        owner = xml.element("Owner", [("ID", rec.get("owner", "")), ("DisplayName", rec.get("owner", ""))])
        common = [("Key", enc(v.key)), ("VersionId", v.version_id), ("IsLatest", "true" if v.is_latest else "false"),
                  ("LastModified", xml.iso8601(rec["created"]))]
        if is_marker(rec):
            fields.append(xml.element("DeleteMarker", common + [owner]))
        else:
            fields.append(xml.element("Version", common + [("ETag", f'"{rec["etag"]}"'), ("Size", rec["size"]),
                                                           owner, ("StorageClass", "STANDARD")]))
    fields += [xml.element("CommonPrefixes", [("Prefix", enc(p))]) for p in page.common_prefixes]
    return web.Response(body=xml.document(xml.element("ListVersionsResult", fields)),
                        content_type="application/xml")
