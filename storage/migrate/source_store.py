"""The source bucket as a store the gateway reads and writes while a bucket migrates.

Answers in Pocket's own shapes (object records, ListPage, VersionPage) so the S3
handlers render a source object exactly like a Pocket one; a record that came from
here carries `"source": True` and is read back from here (`read`). boto3 is
synchronous: every call runs on the executor, never on the event loop. Any failure to
reach or be served by the source is `SourceUnavailable`: before cutover the request
fails with 503 (the source is authoritative), after it the write is journaled.
"""
from __future__ import annotations

import asyncio
import base64
import logging
from email.utils import parsedate_to_datetime
from typing import AsyncIterator
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError

from ..crypto.keys import MASTER_ID, SSE_C, SSE_KMS
from ..index.ops import ListPage
from ..index.versions import Version, VersionPage
from ..index import parts as P
from .record_file import RecordFile
from ..objects.contracts import StoreUnavailable

log = logging.getLogger("pocket.migrate")

STANDARD_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")
_PUT_ARGS = {"Cache-Control": "CacheControl", "Content-Disposition": "ContentDisposition",
             "Content-Encoding": "ContentEncoding", "Content-Language": "ContentLanguage"}
_MISSING = ("404", "NoSuchKey", "NoSuchVersion", "NotFound")
_READ_CHUNK = 1 << 20


class SourceUnavailable(StoreUnavailable):
    """The source could not be reached or refused the request (the S3 layer answers 503)."""


def _missing(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") in _MISSING


class SourceStore:
    def __init__(self, client, bucket: str, label: str):
        self.client, self.bucket, self.label = client, bucket, label

    async def _call(self, what: str, fn, **kw):
        """One boto3 call on the executor; errors other than "not there" become SourceUnavailable."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, lambda: fn(Bucket=self.bucket, **kw))
        except ClientError as e:
            if _missing(e):
                raise
            raise SourceUnavailable(f"{what} at the source {self.label} failed: {e}") from e
        except (BotoCoreError, OSError) as e:
            raise SourceUnavailable(f"{what} at the source {self.label} failed: {e}") from e

    # reads -----------------------------------------------------------------------------------
    async def head(self, pocket_bucket: str, key: str, version_id: str | None = None) -> dict | None:
        """The object (or a version) as a Pocket-shaped record, tags included; None if not there."""
        vid = {"VersionId": version_id} if version_id else {}
        try:
            r = await self._call("HeadObject", self.client.head_object, Key=key, **vid)
            tags = await self._call("GetObjectTagging", self.client.get_object_tagging, Key=key, **vid)
        except ClientError:
            return None
        raw = r["ResponseMetadata"]["HTTPHeaders"]
        headers = {h: raw[h.lower()] for h in STANDARD_HEADERS if h.lower() in raw}
        version = r.get("VersionId")
        record = {"v": 1, "bucket": pocket_bucket, "key": key, "source": True,
                  "version_id": version or "null", "size": r["ContentLength"], "etag": r["ETag"].strip('"'),
                  "created": r["LastModified"].timestamp(),
                  "content_type": r.get("ContentType", "binary/octet-stream"),
                  "meta": dict(r.get("Metadata") or {}), "headers": headers, "checksums": {},
                  "tags": {t["Key"]: t["Value"] for t in tags.get("TagSet", [])}}
        if version and version != "null":
            record["versioned"] = True
        return record

    async def read(self, record: dict, start: int, end: int) -> AsyncIterator[bytes]:
        if record["size"] == 0 or end < start:
            return
        vid = {"VersionId": record["version_id"]} if record.get("versioned") else {}
        loop = asyncio.get_running_loop()
        try:
            r = await self._call("GetObject", self.client.get_object, Key=record["key"], Range=f"bytes={start}-{end}",
                                 IfMatch=f'"{record["etag"]}"', **vid)
        except ClientError as e:
            raise SourceUnavailable(f"{record['key']} is gone from the source {self.label}: {e}") from e
        body, sent = r["Body"], 0
        try:
            while sent < end - start + 1:
                chunk = await loop.run_in_executor(None, body.read, _READ_CHUNK)
                if not chunk:
                    raise SourceUnavailable(f"{record['key']} from the source {self.label} ended after {sent} of "
                                            f"{end - start + 1} bytes")
                sent += len(chunk)
                yield chunk
        finally:
            body.close()

    async def list_objects(self, pocket_bucket: str, prefix: str = "", delimiter: str = "", start_after: str = "",
                           max_keys: int = 1000) -> ListPage:
        kw = {"Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            kw["Delimiter"] = delimiter
        if start_after:
            # a common prefix handed back as the marker: skip everything under it
            kw["StartAfter"] = start_after + "\U0010ffff" if delimiter and start_after.endswith(delimiter) else start_after
        r = await self._call("ListObjectsV2", self.client.list_objects_v2, **kw)
        contents = [(o["Key"], {"key": o["Key"], "bucket": pocket_bucket, "size": o["Size"],
                                "etag": o["ETag"].strip('"'), "created": o["LastModified"].timestamp()})
                    for o in r.get("Contents", [])]
        prefixes = [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        last = max([k for k, _ in contents] + prefixes, default="")
        return ListPage(contents, prefixes, bool(r.get("IsTruncated")), last)

    async def list_versions(self, pocket_bucket: str, prefix: str = "", delimiter: str = "", key_marker: str = "",
                            version_id_marker: str = "", max_keys: int = 1000) -> VersionPage:
        kw = {"Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            kw["Delimiter"] = delimiter
        if key_marker:
            kw["KeyMarker"] = key_marker
            if version_id_marker:
                kw["VersionIdMarker"] = version_id_marker
        r = await self._call("ListObjectVersions", self.client.list_object_versions, **kw)
        rows = []
        for v in r.get("Versions", []):
            rows.append((v, {"size": v["Size"], "etag": v["ETag"].strip('"')}))
        for m in r.get("DeleteMarkers", []):
            rows.append((m, {"delete_marker": True}))
        rows.sort(key=lambda row: (row[0]["Key"], -row[0]["LastModified"].timestamp()))
        page = VersionPage(is_truncated=bool(r.get("IsTruncated")), next_key_marker=r.get("NextKeyMarker", ""),
                           next_version_id_marker=r.get("NextVersionIdMarker", ""),
                           common_prefixes=[p["Prefix"] for p in r.get("CommonPrefixes", [])])
        for v, fields in rows:
            vid = v.get("VersionId") or "null"
            record = {"bucket": pocket_bucket, "key": v["Key"], "version_id": vid, "created": v["LastModified"].timestamp(),
                      **({"versioned": True} if vid != "null" else {}), **fields}
            page.versions.append(Version(v["Key"], record, bool(v.get("IsLatest"))))
        return page

    # writes ----------------------------------------------------------------------------------
    async def stat(self, key: str, version_id: str | None = None) -> dict | None:
        """The source's current version of `key` in one HEAD (no tags): {"etag", "size",
        "created"}, or None if it has none. What a verified read checks Pocket's copy
        against (routing.py); SourceUnavailable if the source cannot say."""
        vid = {"VersionId": version_id} if version_id and version_id != "null" else {}
        try:
            r = await self._call("HeadObject", self.client.head_object, Key=key, **vid)
        except ClientError:
            return None
        return {"etag": r["ETag"].strip('"'), "size": r["ContentLength"], "created": r["LastModified"].timestamp()}

    async def last_modified(self, key: str, version_id: str | None) -> float | None:
        """The source's Last-Modified of what it stores under `key` (that version or delete
        marker), or None if it cannot say now. A dual-written or mirrored write adopts it:
        the source stamps its own time, which trails Pocket's by the upload.

        Read from a listing, which says it to the millisecond; a HEAD's HTTP date has whole
        seconds, and a version stamped 18.000 beside a marker listed at 18.043 sorts before
        it where the source has it after (a key's history order). The HEAD is the fallback
        (a marker has none: it answers 405)."""
        versioned = bool(version_id) and version_id != "null"
        try:
            if versioned:
                r = await self._call("ListObjectVersions", self.client.list_object_versions, Prefix=key, MaxKeys=100)
                listed = [*(r.get("Versions") or ()), *(r.get("DeleteMarkers") or ())]
            else:
                r = await self._call("ListObjectsV2", self.client.list_objects_v2, Prefix=key, MaxKeys=1)
                listed = r.get("Contents") or ()
        except (ClientError, SourceUnavailable):
            listed = ()
        for e in listed:
            if e.get("Key") == key and (not versioned or e.get("VersionId") == version_id):
                return e["LastModified"].timestamp()
        try:
            found = await self.stat(key, version_id)
        except SourceUnavailable:
            return None
        return found and found["created"]

    async def put_from(self, objects, record: dict) -> str | None:
        """Store a Pocket version at the source with its bytes, headers, metadata and tags.

        A multipart version goes as a multipart upload with the same part boundaries, so the
        source's ETag equals Pocket's. Returns the source's version id (None if unversioned)."""
        loop = asyncio.get_running_loop()
        args = put_args(record)
        if not P.is_multipart(record):
            r = await self._call("PutObject", lambda **kw: self._put_file(
                objects, record, loop, **kw), Key=record["key"], **args, **checksum_args(record))
            return r.get("VersionId")
        upload = await self._call("CreateMultipartUpload", self.client.create_multipart_upload,
                                  Key=record["key"], **args)
        uid = upload["UploadId"]
        try:
            done = []
            for number in range(1, P.parts_count(record) + 1):
                first, last = P.part_range(record, number)
                r = await self._call("UploadPart", lambda **kw: self._part_file(
                    objects, record, loop, first, last, **kw), Key=record["key"], UploadId=uid, PartNumber=number)
                done.append({"PartNumber": number, "ETag": r["ETag"]})
            r = await self._call("CompleteMultipartUpload", self.client.complete_multipart_upload, Key=record["key"],
                                 UploadId=uid, MultipartUpload={"Parts": done})
        except BaseException:
            await asyncio.shield(self.abort_upload(record["key"], uid))
            raise
        return r.get("VersionId")

    def _put_file(self, objects, record, loop, **kw):
        body = RecordFile(objects, record, loop)
        try:
            return self.client.put_object(Body=body, ContentLength=body.length, **kw)
        finally:
            body.close()

    def _part_file(self, objects, record, loop, first, last, **kw):
        body = RecordFile(objects, record, loop, first, last)
        try:
            return self.client.upload_part(Body=body, ContentLength=body.length, **kw)
        finally:
            body.close()

    async def delete(self, key: str, version_id: str | None = None) -> dict:
        vid = {"VersionId": version_id} if version_id else {}
        return await self._call("DeleteObject", self.client.delete_object, Key=key, **vid)

    async def put_tags(self, key: str, tags: dict, version_id: str | None = None) -> None:
        vid = {"VersionId": version_id} if version_id else {}
        tag_set = [{"Key": k, "Value": v} for k, v in tags.items()]
        await self._call("PutObjectTagging", self.client.put_object_tagging, Key=key, Tagging={"TagSet": tag_set},
                         **vid)

    async def put_setting(self, key: str, kind: str, changes: dict, version_id: str | None = None) -> None:
        """Mirror a canned ACL, a legal hold or a retention (ObjectService.amend's kinds) to the source."""
        vid = {"VersionId": version_id} if version_id else {}
        if kind == "acl":
            await self._call("PutObjectAcl", self.client.put_object_acl, Key=key, ACL=changes["acl"], **vid)
        elif kind == "legal-hold":
            await self._call("PutObjectLegalHold", self.client.put_object_legal_hold, Key=key,
                             LegalHold={"Status": changes["legal_hold"]}, **vid)
        elif kind == "retention":
            held = changes["retention"]
            retention = {"Mode": held["mode"], "RetainUntilDate": held["until"]} if held else {}
            await self._call("PutObjectRetention", self.client.put_object_retention, Key=key, Retention=retention,
                             **vid)
        else:
            raise ValueError(f"no way to mirror a {kind!r} change to the source")

    async def create_upload(self, key: str, attrs: dict) -> str:
        r = await self._call("CreateMultipartUpload", self.client.create_multipart_upload, Key=key,
                             **put_args(attrs))
        return r["UploadId"]

    async def upload_part(self, objects, key: str, upload_id: str, number: int, part: dict) -> str:
        loop = asyncio.get_running_loop()
        r = await self._call("UploadPart", lambda **kw: self._part_file(objects, part, loop, 0, part["size"] - 1, **kw),
                             Key=key, UploadId=upload_id, PartNumber=number)
        return r["ETag"].strip('"')

    async def complete_upload(self, key: str, upload_id: str, wanted: list[tuple[int, str]]) -> dict:
        return await self._call("CompleteMultipartUpload", self.client.complete_multipart_upload, Key=key,
                                UploadId=upload_id,
                                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": f'"{e}"'} for n, e in wanted]})

    async def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await self._call("AbortMultipartUpload", self.client.abort_multipart_upload, Key=key, UploadId=upload_id)
        except (SourceUnavailable, ClientError) as e:
            log.warning("could not abort upload %s of %s at the source %s (%s); the source's own lifecycle rules "
                        "or `aws s3api abort-multipart-upload` can remove it", upload_id, key, self.label, e)


def put_args(record: dict) -> dict:
    """PutObject/CreateMultipartUpload arguments carrying a record's (or upload's) attributes."""
    args = {"ContentType": record.get("content_type") or "binary/octet-stream",
            "Metadata": dict(record.get("meta") or {})}
    for header, arg in _PUT_ARGS.items():
        if header in (record.get("headers") or {}):
            args[arg] = record["headers"][header]
    expires = (record.get("headers") or {}).get("Expires")
    if expires:
        try:
            args["Expires"] = parsedate_to_datetime(expires)
        except (TypeError, ValueError):
            log.warning("%s: Expires %r is not an HTTP date; not carried to the source", record.get("key"), expires)
    if record.get("tags"):
        args["Tagging"] = urlencode(record["tags"])
    return {**args, **sse_args(record.get("sse"))}


# boto3's PutObject members for x-amz-checksum-* (digests.CHECKSUM_ALGORITHMS)
_CHECKSUM_ARGS = {"crc32": "ChecksumCRC32", "crc32c": "ChecksumCRC32C", "crc64nvme": "ChecksumCRC64NVME",
                  "sha1": "ChecksumSHA1", "sha256": "ChecksumSHA256"}


def checksum_args(record: dict) -> dict:
    """A single-PUT version's x-amz-checksum-* values, sent with its bytes: the source checks
    them and keeps them, so the mirror answers a checksum request as Pocket does. (A
    multipart version's checksums are per part; they are not carried to the source yet.)"""
    for algorithm, value in (record.get("checksums") or {}).items():
        if algorithm in _CHECKSUM_ARGS:   # (the algorithm named too: moto keeps a value only then)
            return {_CHECKSUM_ARGS[algorithm]: value, "ChecksumAlgorithm": algorithm.upper()}
    return {}


def sse_args(sse: dict | None) -> dict:
    """The source encrypts what Pocket was asked to encrypt, as the client asked (SSE-S3, or
    SSE-KMS with the client's key id and context). SSE-C never gets here: the key is the
    client's, so routing.py refuses SSE-C writes to a migrating bucket."""
    if not sse:
        return {}
    if sse["mode"] == SSE_C:
        raise SourceUnavailable("an SSE-C object cannot be written to the source: its key is the client's")
    args = {"ServerSideEncryption": sse["mode"]}
    if sse["mode"] == SSE_KMS and sse.get("kid") and sse["kid"] != MASTER_ID:
        args["SSEKMSKeyId"] = sse["kid"]
    if sse["mode"] == SSE_KMS and sse.get("context"):
        args["SSEKMSEncryptionContext"] = base64.b64encode(sse["context"].encode()).decode()
    if sse.get("bucket_key"):
        args["BucketKeyEnabled"] = True
    return args
