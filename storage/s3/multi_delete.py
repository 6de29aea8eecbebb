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

from ..objects.put import QuorumLost
from . import errors, xml
from .body import read_small
from .bucket import owned_bucket
from .names import check_key
from .request import S3Request

log = logging.getLogger("pocket.s3")

MAX_KEYS = 1000
_MAX_BODY = 8 << 20      # 1000 keys of 1024 bytes, XML-escaped, fit comfortably
_PARALLEL = 16


async def delete_objects(req: S3Request) -> web.Response:
    owned_bucket(req)
    quiet, targets = _parse(await read_small(req, _MAX_BODY, require_digest=True))
    sem = asyncio.Semaphore(_PARALLEL)

    async def one(key: str, version: str | None):
        async with sem:
            try:
                check_key(key)
                if version is not None and version != "null":
                    raise errors.NoSuchVersion(Key=key, VersionId=version)
                await req.gateway.objects.delete(req.bucket, key)
                return None
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
    for (key, version), error in zip(targets, outcomes):
        if error is None:
            if not quiet:
                fields = [("Key", key)] + ([("VersionId", version)] if version else [])
                results.append(xml.element("Deleted", fields))
        else:
            fields = [("Key", key)] + ([("VersionId", version)] if version else [])
            results.append(xml.element("Error", fields + [("Code", error.code), ("Message", error.text)]))
    return web.Response(body=xml.document(xml.element("DeleteResult", results)), content_type="application/xml")


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
