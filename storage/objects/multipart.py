"""Multipart uploads: what Create, UploadPart, Complete and Abort mean to Pocket.

A part is stored exactly like an object version (`ObjectService.store`: its own version
id, volume and fragment archives); its manifest marks it as a part
(`{"kind": "part", "upload_id", "part_number", "upload": {...}}`) and carries the
upload's attributes, so an index rebuild can restore an upload still in progress.
Complete copies no data: the object record lists the parts (see parts.py).

The durable steps, in order, as for PutObject:

- UploadPart: archives on a write quorum -> index commit of the part (NoSuchUpload if
  the upload ended meanwhile; its archives are then removed) -> the part it replaced
  is removed.
- Complete: validate -> the object record written as a record (kind "object") to the
  disks of the first part's volume, on that part's write quorum -> one index commit
  installs the object and drops the upload -> unlisted parts and the object version
  it replaced are removed.
- Abort: an "upload-aborted" record on the disks -> index commit -> the parts' archives
  are removed before the reply.

The disk records tell `pocket index rebuild` a completed upload (its object competes
like any version; leftover parts are garbage) and an aborted one (ignored) from one in
progress (restored with its newest part of each number).
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterable, Callable

from ..crypto.keys import Sealing
from ..index.uploads import NoSuchUpload, UploadPage, UploadTxn
from ..index import parts as P
from .contracts import Digests, VersionRecord
from .ids import new_id
from .commits import install
from .service import ObjectService


class InvalidPart(Exception):
    """A part named by Complete is not stored under that number with that ETag."""

    def __init__(self, number: int, etag: str):
        super().__init__(f"part {number} with ETag {etag} is not part of this upload")
        self.number, self.etag = number, etag


class PartTooSmall(Exception):
    """A part other than the last is below the 5 MiB minimum."""

    def __init__(self, number: int, size: int, etag: str):
        super().__init__(f"part {number} is {size} bytes; all parts but the last need {P.MIN_PART_SIZE}")
        self.number, self.size, self.etag = number, size, etag


class MultipartService:
    def __init__(self, objects: ObjectService):
        self.objects = objects
        self.index, self.writer = objects.index, objects.writer

    def _view(self, fn):
        with self.index.read() as ops:
            return fn(UploadTxn(ops))

    # lookups -----------------------------------------------------------------------------
    def get(self, bucket: str, key: str, upload_id: str) -> dict:
        """The upload, or NoSuchUpload."""
        upload = self._view(lambda u: u.get_upload(bucket, key, upload_id))
        if upload is None:
            raise NoSuchUpload(upload_id)
        return upload

    def list_parts(self, upload: dict, after: int, max_parts: int) -> tuple[list[dict], bool]:
        return self._view(lambda u: u.list_parts(upload["upload_id"], after, max_parts))

    def list_uploads(self, bucket: str, **query) -> UploadPage:
        return self._view(lambda u: u.list_uploads(bucket, **query))

    # writes ------------------------------------------------------------------------------
    async def create(self, bucket: str, key: str, attrs: dict, policy_name: str | None = None,
                     checksum: dict | None = None, extra: dict | None = None) -> dict:
        """Start an upload; `attrs` (content type, metadata, owner...) go to the final object.

        `checksum` ({"algorithm", "type"}) is what every part must carry and how the
        object's checksum is made from theirs (s3/multipart_checksums.py). `extra` fields
        are kept in the upload's index record (a migration's upload id at the source)."""
        upload = {"upload_id": new_id(), "bucket": bucket, "key": key, "initiated": time.time(),
                  "policy": policy_name, "attrs": attrs, **(extra or {})}
        if checksum:
            upload["checksum"] = checksum
        await self.writer.submit(lambda ops: UploadTxn(ops).create_upload(bucket, key, upload))
        return upload

    async def upload_part(self, upload: dict, number: int, body: AsyncIterable[bytes], size_hint: int | None,
                          digests: Digests, sealing: Sealing | None = None) -> VersionRecord:
        """Store one part like an object version (sealed with a data key of its own, when
        the upload is encrypted); replaces an earlier part of that number."""
        bucket, key, uid = upload["bucket"], upload["key"], upload["upload_id"]
        fields = {"kind": "part", "bucket": bucket, "key": key, "upload_id": uid, "part_number": number,
                  "upload": {f: upload[f] for f in ("initiated", "policy", "attrs", "checksum") if f in upload}}
        record = await self.objects.store(body, size_hint, digests, fields, upload.get("policy"), sealing=sealing)
        previous = await self.objects.commit(
            record, lambda ops: UploadTxn(ops).put_part(bucket, key, uid, number, record))
        if previous is not None:
            self.objects.forget(previous)
        return record

    async def completed(self, bucket: str, key: str, upload_id: str) -> dict | None:
        """The current object if this upload completed it (a retried Complete succeeds again)."""
        current = await self.objects.head(bucket, key)
        return current if current and current.get("upload_id") == upload_id else None

    async def complete(self, upload: dict, wanted: list[tuple[int, str]],
                       part_checksums: dict[int, dict] | None = None,
                       checksum_of: Callable[[list[dict]], dict] | None = None,
                       versioned: bool = False, condition=None) -> VersionRecord:
        """Make the object from the listed (part number, ETag) pairs, already in ascending order.

        `part_checksums` ({number: {algorithm: base64}}) are checksums the client listed
        for parts: each must equal the stored one (else InvalidPart). `checksum_of(parts)`
        gives the object record's checksum fields from the chosen parts. `versioned`: the
        bucket has versioning Enabled, so the object is a new version rather than the null
        one (see commits.py). `condition(current_record_or_None)` runs in the transaction that
        installs the object, as for a PUT (If-Match / If-None-Match); if it raises, the
        upload stays open and the exception propagates."""
        bucket, key, uid = upload["bucket"], upload["key"], upload["upload_id"]
        stored = {p["part_number"]: p for p in await self.index.call(self._view, lambda u: u.all_parts(uid))}
        chosen = []
        for number, etag in wanted:
            part = stored.get(number)
            if part is None or part["etag"] != etag:
                raise InvalidPart(number, etag)
            have = part.get("checksums") or {}
            if any(have.get(algorithm) != value for algorithm, value in (part_checksums or {}).get(number, {}).items()):
                raise InvalidPart(number, etag)
            chosen.append(part)
        for part in chosen[:-1]:
            if part["size"] < P.MIN_PART_SIZE:
                raise PartTooSmall(part["part_number"], part["size"], part["etag"])
        first = chosen[0]
        record: VersionRecord = {
            "v": 1, "bucket": bucket, "key": key, "version_id": new_id(), "created": time.time(),
            "size": sum(p["size"] for p in chosen), "etag": P.multipart_etag([p["etag"] for p in chosen]),
            "checksums": {}, **upload["attrs"], **(checksum_of(chosen) if checksum_of else {}), "upload_id": uid,
            # where this record lives on disk (and its tombstone will): the first part's volume
            "policy": first["policy"], "k": first["k"], "m": first["m"],
            "volume": first["volume"], "disks": first["disks"],
            "parts": [P.part_entry(p["part_number"], p) for p in chosen],
            **({"versioned": True} if versioned else {}),
        }
        volume = self.objects.cluster.volumes[first["volume"]]
        await self.objects.put_records(volume, {"kind": "object", "object": record}, self._quorum(first))
        numbers = {p["part_number"]: p["version_id"] for p in chosen}

        def install_upload(ops):
            u = UploadTxn(ops)
            if u.get_upload(bucket, key, uid) is None:
                raise NoSuchUpload(uid)
            for number, version_id in numbers.items():
                current = u.get_part(uid, number)
                if current is None or current["version_id"] != version_id:
                    raise InvalidPart(number, stored[number]["etag"])  # re-uploaded meanwhile
            displaced = install(ops, bucket, key, record, condition)
            leftovers = [p for p in u.delete_upload(bucket, key, uid) if p["part_number"] not in numbers]
            return displaced, leftovers
        try:
            displaced, leftovers = await self.writer.submit(install_upload)
        except Exception:   # the object record is on the disks: a rebuild must not complete it
            await asyncio.shield(self.objects.end_version(record))
            raise
        self.objects.forget_all(displaced)
        if leftovers:
            self.objects.forget({"parts": leftovers})
        return record

    async def abort(self, upload: dict) -> None:
        """End the upload and remove its parts' archives before returning."""
        bucket, key, uid = upload["bucket"], upload["key"], upload["upload_id"]
        stored = await self.index.call(self._view, lambda u: u.all_parts(uid))
        volume, quorum = self._record_home(stored, uid)
        await self.objects.put_records(volume, {"kind": "upload-aborted", "bucket": bucket, "key": key,
                                                "upload_id": uid}, quorum)
        removed = await self.writer.submit(lambda ops: UploadTxn(ops).delete_upload(bucket, key, uid))
        if removed is None:
            raise NoSuchUpload(uid)
        await self.objects.remove({"parts": removed})

    async def abort_all(self, bucket: str) -> int:
        """Abort every upload of a bucket (S3 drops them when the bucket is deleted)."""
        uploads = await self.index.call(self._view, lambda u: list(u.iter_bucket_uploads(bucket)))
        for upload in uploads:
            try:
                await self.abort(upload)
            except NoSuchUpload:
                pass
        return len(uploads)

    # helpers -----------------------------------------------------------------------------
    def _quorum(self, part: dict) -> int:
        return self.objects.policy_of(part).quorum

    def _record_home(self, stored: list[dict], upload_id: str) -> tuple[dict, int]:
        """Where an upload's disk records go: its first part's volume, else a default-policy volume."""
        if stored:
            return self.objects.cluster.volumes[stored[0]["volume"]], self._quorum(stored[0])
        volume, policy = self.objects.record_home(upload_id)
        return volume, policy.quorum
