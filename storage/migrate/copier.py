"""One source version copied into Pocket exactly: bytes, headers, metadata, tags, Last-Modified,
ETag, checksums and version id.

Writes go through the object and multipart services in this process (as `pocket repair`
opens the cluster), because only there can a copy keep the source's Last-Modified and
version id; or, for small versions beside a gateway that runs the disks, through the
gateway's own object service with the same `store` call (gateway_copy.py). Every byte is
checked on the way in with the same digests a client PUT gets: the source's ETag (when it
is an MD5) as Content-MD5 and its x-amz-checksum-* values, so a body that changed or
rotted in transit is refused and nothing is kept.

A multipart object is copied part by part with the source's part boundaries (HeadObject
partNumber=N gives each part's length), so Complete makes the same md5-of-md5s-N ETag;
it is compared with the source's before the object is installed. The source's object
checksum (e.g. a FULL_OBJECT CRC64NVME) is recomputed from the parts and must match.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import logging
import re
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from ..index.versions import NULL
from ..index import parts as P
from ..s3 import multipart_checksums as mpc
from ..s3.digests import CHECKSUM_ALGORITHMS, BodyDigests
from . import presigned_get, source_body

log = logging.getLogger("pocket.migrate.copy")

CHUNK = 1 << 20
PARTS_AT_ONCE = 4         # parts of one multipart object copied at once
# Bodies larger than CHUNK (objects and parts) streamed at once by one copy process, whatever
# its concurrency: each holds ~10 MiB of buffers (socket, segments, encoded fragments), so
# 32 large objects of 4 parts in flight took a process past 1 GB (548 MB RSS measured with
# 64 streams); 8 keep it near 200 MB, and keep both cores of the bench box busy.
LARGE_STREAMS = 8
_MD5 = re.compile(r"[0-9a-f]{32}")
_MULTIPART = re.compile(r"[0-9a-f]{32}-[0-9]+")
_STANDARD = {"CacheControl": "Cache-Control", "ContentDisposition": "Content-Disposition",
             "ContentEncoding": "Content-Encoding", "ContentLanguage": "Content-Language"}


class SourceChanged(Exception):
    """The source version is not what the listing said (overwritten or deleted meanwhile)."""


class NeedsRestore(Exception):
    """The source keeps this version in Glacier or Deep Archive: it must be restored
    (S3 RestoreObject) before it can be read; retrying does not help."""


@dataclass
class Wanted:
    """A source version to copy, as listed: (key, source version id, ...), plus the
    internal id that places it among the key's versions in Pocket."""
    key: str
    version_id: str          # the source's, "null" for unversioned objects
    delete_marker: bool
    size: int
    etag: str
    last_modified: float
    internal_id: str


class RateLimit:
    """Bytes per second for the whole process (0: unlimited), a token bucket of one second."""

    def __init__(self, rate: float):
        self.rate, self._tokens, self._last = rate, rate, None
        self._lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        if not self.rate:
            return
        async with self._lock:
            loop = asyncio.get_running_loop()
            now = loop.time()
            if self._last is not None:
                self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)


async def _call(fn, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(**kwargs))


async def _stream(body, limit: RateLimit, counter: list[int]) -> AsyncIterator[bytes]:
    """A source body read a chunk at a time (bounded memory): a source_body.ThreadedBody
    (received by a thread of its own), or a boto3 streaming body read in the pool's threads."""
    loop = asyncio.get_running_loop()
    if isinstance(body, source_body.ThreadedBody):
        read = body.read
    else:
        def read(n: int):
            return loop.run_in_executor(None, body.read, n)
    try:
        while True:
            data = await read(CHUNK)
            if not data:
                return
            await limit.take(len(data))
            counter[0] += len(data)
            yield data
    finally:
        body.close()


async def _empty() -> AsyncIterator[bytes]:
    return
    yield


def _version_arg(w: Wanted) -> dict:
    return {"VersionId": w.version_id} if w.version_id != NULL else {}


def _checksums(head: dict) -> dict[str, str]:
    return {a: head[f"Checksum{a.upper()}"] for a in CHECKSUM_ALGORITHMS if head.get(f"Checksum{a.upper()}")}


def attrs_of(head: dict, tags: dict, w: Wanted, versioned: bool) -> dict:
    """The record fields a client PUT would have set, taken from the source's HEAD."""
    raw = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    headers = {h: head[f] for f, h in _STANDARD.items() if head.get(f)}
    if raw.get("expires"):
        headers["Expires"] = raw["expires"]
    last_modified = head["LastModified"].timestamp() if head.get("LastModified") else w.last_modified
    attrs = {"content_type": head.get("ContentType") or "binary/octet-stream", "meta": dict(head.get("Metadata") or {}),
             "headers": headers, "owner": "", "created": last_modified, "migrated_from": w.version_id,
             # when the copy was stored: the scrubber's orphan grace counts from it (the
             # internal id carries the source's Last-Modified, see storage/repair/scrub.py)
             "copied": time.time()}
    if tags:
        attrs["tags"] = tags
    if versioned and w.version_id != NULL:
        attrs.update({"versioned": True, "s3_version_id": w.version_id})
    return attrs


@dataclass
class Write:
    """What a copy stores for one version, apart from its bytes: what `store` needs, and
    what a copy sent through the gateway carries (gateway_copy.py) so both write alike."""
    bucket: str
    key: str
    size: int = 0
    want: dict = field(default_factory=dict)    # digests the body must match (Content-MD5, x-amz-checksum-*)
    attrs: dict = field(default_factory=dict)
    version_id: str = ""              # the internal id (version_ids.internal_ids)
    marker: dict | None = None        # a delete marker's fields, instead of a body


async def store(objects, write: Write, body: AsyncIterator[bytes] | None = None) -> dict | None:
    """The one call that stores a copied version, in this process or in the gateway."""
    if write.marker is not None:
        return await objects.delete(write.bucket, write.key, marker_fields=write.marker)
    digests = BodyDigests(write.want, write.size, None)
    return await objects.put(write.bucket, write.key, body, write.size, digests, write.attrs,
                             version_id=write.version_id)


async def copy_version(objects, multipart, client, src_bucket: str, bucket: str, w: Wanted,
                       limit: RateLimit, moved: list[int], urls: presigned_get.PresignedGet | None = None,
                       via=None, streams: asyncio.Semaphore | None = None) -> dict | None:
    """Copy one version (or delete marker) of the source into Pocket; returns its record.
    `urls`: the source is read with presigned URLs (presigned_get.py) when it is given.
    `streams`: a slot of it is held while a body larger than CHUNK is read and stored.
    `via` (gateway_copy.Sender): delete markers and objects read whole are handed to the
    running gateway, which group-commits them; when it cannot take one, it is written here."""
    versioned = w.version_id != NULL
    if w.delete_marker:
        fields = {"version_id": w.internal_id, "created": w.last_modified, "versioned": versioned,
                  **({"s3_version_id": w.version_id} if versioned else {})}
        write = Write(bucket, w.key, marker=fields)
        if via is not None and (got := await via.send(write, b"")) is not None:
            return got
        return await store(objects, write)
    if is_multipart_etag(w.etag):
        head = await _head(client, urls, src_bucket, w)
        attrs, checksums = await _attrs(client, src_bucket, w, head)
        return await _copy_multipart(multipart, client, src_bucket, bucket, w, head, attrs, checksums, limit, moved,
                                     urls, streams)
    async with _large_slot(streams, w.size):
        return await _copy_single(objects, client, src_bucket, bucket, w, limit, moved, urls, via)


def is_multipart_etag(etag: str) -> bool:
    """md5-of-md5s-N: HEADed for its part count and composite checksums; any other
    version's GET brings every header its HEAD would."""
    return bool(_MULTIPART.fullmatch(etag))


def _large_slot(streams: asyncio.Semaphore | None, size: int):
    """A slot of `streams` for a body larger than CHUNK; nothing to wait for otherwise."""
    return streams if streams is not None and size > CHUNK else contextlib.nullcontext()


async def _copy_single(objects, client, src_bucket: str, bucket: str, w: Wanted, limit: RateLimit,
                       moved: list[int], urls, via) -> dict | None:
    # one request for a single-PUT object: GET brings every header HEAD would
    try:
        got = await source_get(client, urls, src_bucket, w)
    except client.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") == "InvalidObjectState":
            raise NeedsRestore(f"{src_bucket}/{w.key} is archived at the source (Glacier/Deep Archive): "
                               "restore it there (S3 RestoreObject), then run copy again") from None
        if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (404, 405, 412):
            raise SourceChanged(f"{src_bucket}/{w.key} version {w.version_id} changed at the source "
                                "since it was listed") from None
        raise
    try:
        if got["ContentLength"] != w.size:
            raise SourceChanged(f"{src_bucket}/{w.key} changed at the source since it was listed")
        attrs, checksums = await _attrs(client, src_bucket, w, got)
    except BaseException:
        if not isinstance(got["Body"], bytes):
            got["Body"].close()
        raise
    want = {f"x-amz-checksum-{a}": v for a, v in checksums.items()}
    # SSE-KMS and SSE-C objects' ETags are not their MD5 (their bytes are checked by the
    # checksums when the source has any); every other single-PUT ETag is
    if _MD5.fullmatch(w.etag) and got.get("ServerSideEncryption") != "aws:kms" and not got.get("SSECustomerAlgorithm"):
        want["Content-MD5"] = base64.b64encode(bytes.fromhex(w.etag)).decode()
    write = Write(bucket, w.key, w.size, want, attrs, w.internal_id)
    if not isinstance(got["Body"], bytes):
        return await store(objects, write, _stream(got["Body"], limit, moved))
    await limit.take(w.size)
    moved[0] += w.size
    if via is not None and (sent := await via.send(write, got["Body"])) is not None:
        return sent
    return await store(objects, write, whole(got["Body"]))


async def source_get(client, urls, src_bucket: str, w: Wanted, if_match: str | None = None,
                      byte_range: tuple[int, int] | None = None) -> dict:
    """get_object of the version, or of the inclusive `byte_range` of it: through a presigned
    URL when the source answers one (small bodies read whole, others streamed), else botocore."""
    whole_small = byte_range is None and w.size <= CHUNK
    if_match = if_match or f'"{w.etag}"'
    if urls is not None:
        version = w.version_id if w.version_id != NULL else None
        try:
            got = await (urls.get(src_bucket, w.key, version, w.etag) if whole_small else
                         urls.stream(src_bucket, w.key, version, if_match, byte_range))
        except presigned_get.Changed:
            raise SourceChanged(f"{src_bucket}/{w.key} version {w.version_id} changed at the source "
                                "since it was listed") from None
        if got is not None:
            return got
    args = {"Bucket": src_bucket, "Key": w.key, "IfMatch": if_match, **_version_arg(w)}
    if byte_range is None:
        args["ChecksumMode"] = "ENABLED"
    else:    # a byte range, not partNumber: some servers (moto) answer GET partNumber with the whole object
        args["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    got = await _call(functools.partial(_get_small, client) if whole_small else client.get_object, **args)
    if urls is not None:
        urls.botocore_answered(f"{src_bucket}/{w.key}")
    return got


def _get_small(client, **kwargs) -> dict:
    """GetObject with the body read in the same thread call: a small object costs one hop
    to the thread pool instead of three (the copy of small objects is CPU-bound)."""
    got = client.get_object(**kwargs)
    with got["Body"] as body:
        got["Body"] = body.read()
    return got


async def whole(data: bytes) -> AsyncIterator[bytes]:
    """A body already read, as the stream the object service takes."""
    if data:
        yield data


async def head_of(client, urls, src_bucket: str, w, part_number: int | None = None) -> dict:
    """head_object of the version (of one part with `part_number`), checksums asked for:
    by presigned URL when `urls` is given and the source answers it, else botocore."""
    if urls is not None:
        got = await urls.head(src_bucket, w.key, w.version_id if w.version_id != NULL else None, part_number)
        if got is not None:
            return got
    got = await _call(client.head_object, Bucket=src_bucket, Key=w.key, ChecksumMode="ENABLED", **_version_arg(w),
                      **({"PartNumber": part_number} if part_number is not None else {}))
    if urls is not None:
        urls.botocore_answered(f"{src_bucket}/{w.key}")
    return got


async def _head(client, urls, src_bucket: str, w) -> dict:
    try:
        head = await head_of(client, urls, src_bucket, w)
    except client.exceptions.ClientError as e:
        if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (404, 405):
            raise SourceChanged(f"{src_bucket}/{w.key} version {w.version_id} is gone at the source") from None
        raise
    if head["ETag"].strip('"') != w.etag or head["ContentLength"] != w.size:
        raise SourceChanged(f"{src_bucket}/{w.key} changed at the source since it was listed")
    return head


async def tags_of(client, src_bucket: str, w, head: dict) -> dict:
    """The version's tags; asked for only when the source says it has some
    (x-amz-tagging-count, which S3 sends on GET and HEAD of a tagged object)."""
    if not head.get("TagCount"):
        return {}
    got = await _call(client.get_object_tagging, Bucket=src_bucket, Key=w.key, **_version_arg(w))
    return {t["Key"]: t["Value"] for t in got.get("TagSet", ())}


async def _attrs(client, src_bucket: str, w, head: dict) -> tuple[dict, dict]:
    tags = await tags_of(client, src_bucket, w, head)
    return attrs_of(head, tags, w, w.version_id != NULL), _checksums(head)


async def _copy_multipart(multipart, client, src_bucket, bucket, w: Wanted, head: dict, attrs: dict,
                          checksums: dict, limit: RateLimit, moved: list[int], urls=None, streams=None) -> dict:
    count = int(w.etag.rsplit("-", 1)[1])
    heads = await _at_most(PARTS_AT_ONCE * 4, [functools.partial(head_of, client, urls, src_bucket, w, n)
                                               for n in range(1, count + 1)])
    if sum(h["ContentLength"] for h in heads) != w.size:
        raise SourceChanged(f"{src_bucket}/{w.key}: its parts do not add up to its size (changed meanwhile?)")
    declared = None
    if checksums:
        algorithm, value = next(iter(checksums.items()))
        kind = head.get("ChecksumType") or (mpc.COMPOSITE if "-" in value else mpc.FULL_OBJECT)
        declared = {"algorithm": algorithm, "type": kind}
    await _abort_leftovers(multipart, bucket, w.key)
    upload = await multipart.create(bucket, w.key, {**attrs, "version_id": w.internal_id}, checksum=declared)
    async def one_part(number: int, part_head: dict, offset: int) -> dict:
        async with _large_slot(streams, part_head["ContentLength"]):
            length = part_head["ContentLength"]
            part_sum = _checksums(part_head).get(declared["algorithm"]) if declared else None
            want = {f"x-amz-checksum-{declared['algorithm']}": part_sum} if part_sum and "-" not in part_sum else {}
            digests = BodyDigests(want, length, None)
            if declared and not want:
                digests.compute(declared["algorithm"])
            body = _empty() if not length else _stream((await source_get(
                client, urls, src_bucket, w, head["ETag"], (offset, offset + length - 1)))["Body"], limit, moved)
            return await multipart.upload_part(upload, number, body, length, digests)

    offsets = itertools.accumulate([0] + [h["ContentLength"] for h in heads[:-1]])
    try:
        # a few parts at once: one object's parts are as independent as different objects
        stored = await _at_most(PARTS_AT_ONCE, [functools.partial(one_part, n, h, o)
                                                for n, (h, o) in enumerate(zip(heads, offsets), 1)])
        made = P.multipart_etag([p["etag"] for p in stored])
        if made != w.etag:
            raise SourceChanged(f"{src_bucket}/{w.key}: its parts make ETag {made}, the source says {w.etag} "
                                "(parts not as HeadObject partNumber reported them)")
        object_sum = {f"x-amz-checksum-{a}": v for a, v in checksums.items()}
        return await multipart.complete(upload, [(p["part_number"], p["etag"]) for p in stored],
                                        checksum_of=lambda chosen: mpc.of_object(declared, chosen, object_sum),
                                        versioned=bool(attrs.get("versioned")))
    except BaseException:
        await asyncio.shield(_abort(multipart, upload))
        raise


async def _at_most(n: int, calls: list) -> list:
    """Await `calls` (coroutine functions), n at a time; results in order. The first failure
    cancels the rest and is raised."""
    slots = asyncio.Semaphore(n)

    async def one(call):
        async with slots:
            return await call()
    tasks = [asyncio.ensure_future(one(call)) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _abort_leftovers(multipart, bucket: str, key: str) -> None:
    """Uploads of this key left by a copy that was killed mid-object: the caller holds the
    key's range lease, so no live copy owns them (clients' own uploads are left alone)."""
    page = multipart.list_uploads(bucket, prefix=key, max_uploads=1000)
    for upload in page.uploads:
        if upload["key"] == key and "migrated_from" in upload.get("attrs", {}):
            log.info("aborting upload %s of %s/%s left by an interrupted copy", upload["upload_id"], bucket, key)
            await _abort(multipart, upload)


async def _abort(multipart, upload: dict) -> None:
    try:
        await multipart.abort(upload)
    except Exception as e:     # the upload may be gone already (completed or never stored)
        log.debug("abort of copy upload %s: %r", upload["upload_id"], e)
