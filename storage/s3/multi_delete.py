"""DeleteObjects: `POST /bucket?delete` with up to 1000 keys in one XML body.

Each key is deleted exactly as DeleteObject would (tombstone on the disks, then the
index), a few at a time; a key that fails is reported in its own <Error> and the
others go on. Deleting a key that does not exist is a success, as in S3. Quiet mode
reports only the errors. A bad body (malformed XML, no keys, more than 1000, wrong
Content-MD5/checksum) deletes nothing.
"""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..index.versions import NULL, is_marker, s3_version_id, valid_version_id
from ..objects.put import QuorumLost
from . import errors, xml
from .body import read_small
from .access import check, owned_bucket
from .names import check_key
from .request import S3Request

log = logging.getLogger("pocket.s3")

MAX_KEYS = 1000
_MAX_BODY = 8 << 20      # 1000 keys of 1024 bytes, XML-escaped, fit comfortably
_PARALLEL = 16


async def delete_objects(req: S3Request) -> web.Response:
    bucket = owned_bucket(req)
    quiet, targets = _parse(await read_small(req, _MAX_BODY, require_digest=True))
    sem = asyncio.Semaphore(_PARALLEL)

    async def one(key: str, version: str | None):
        async with sem:
            try:
                check_key(key)
                check(req, "s3:DeleteObjectVersion" if version else "s3:DeleteObject", bucket, key)
                return await _delete(req, bucket, key, version)
            except errors.S3Error as e:
                return e
            except QuorumLost as e:
                log.warning("DeleteObjects %s/%s: %s", req.bucket, key, e)
                return errors.ServiceUnavailable()
            except Exception:
                log.exception("DeleteObjects %s/%s failed (request %s)", req.bucket, key, req.request_id)
                return errors.InternalError()

    outcomes = await asyncio.gather(*(one(k, v) for k, v in targets))
    results = []
    for (key, version), outcome in zip(targets, outcomes):
        fields = [("Key", key)] + ([("VersionId", version)] if version else [])
        if isinstance(outcome, errors.S3Error):
            results.append(xml.element("Error", fields + [("Code", outcome.code), ("Message", outcome.text)]))
        elif not quiet:
            results.append(xml.element("Deleted", fields + outcome))
    return web.Response(body=xml.document(xml.element("DeleteResult", results)), content_type="application/xml")


async def _delete(req: S3Request, bucket: dict, key: str, version: str | None) -> list[tuple[str, str]]:
    """Delete one entry as DeleteObject would; the DeleteMarker fields of its <Deleted>."""
    if version is not None and not valid_version_id(version):
        raise errors.NoSuchVersion(Key=key, VersionId=version)  # what S3 reports per key here
    if version is None or (version == NULL and not bucket.get("versioning")):
        removed = await req.gateway.objects.delete(req.bucket, key, owner=req.access_key)
        if removed is not None and is_marker(removed):  # a new delete marker
            return [("DeleteMarker", "true"), ("DeleteMarkerVersionId", s3_version_id(removed))]
        return []
    removed = await req.gateway.objects.delete_version(req.bucket, key, version)
    if removed is not None and is_marker(removed):  # (a version not there: Deleted, as S3 says)
        return [("DeleteMarker", "true"), ("DeleteMarkerVersionId", version)]
    return []


def _parse(body: bytes) -> tuple[bool, list[tuple[str, str | None]]]:
    root = xml.parse(body)
    if root is None or root.tag != "Delete":
        raise errors.MalformedXML()
    quiet_el = root.find("Quiet")
    quiet = quiet_el is not None and (quiet_el.text or "").strip().lower() == "true"
    targets = []
    for obj in root.findall("Object"):
        key_el = obj.find("Key")
        if key_el is None or not key_el.text:
            raise errors.MalformedXML()
        version_el = obj.find("VersionId")
        targets.append((key_el.text, None if version_el is None else (version_el.text or "")))
    if not targets or len(targets) > MAX_KEYS:
        raise errors.MalformedXML(f"A DeleteObjects request names 1 to {MAX_KEYS} keys; this one names "
                                  f"{len(targets)}." if targets else None)
    return quiet, targets
