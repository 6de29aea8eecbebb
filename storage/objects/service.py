"""The object service: what a PUT, GET or DELETE of one object means to Pocket.

S3 handlers call this; it owns the order of durable steps (archives fsync'd on a write
quorum of disks, then the index commit, then cleanup of what the write replaced) and
never parses HTTP. The index is only a cache of what the disks say: every archive
carries the manifest, and deletes leave tombstones on the disks.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterable, AsyncIterator, Callable

from .. import layout
from ..crypto.keys import Keyring, Sealing, SSE_S3
from ..cluster import Cluster
from ..index.batcher import IndexWriter
from ..index.index import Index
from ..placement.volumes import choose_volume
from ..index import parts
from . import locks, reads, tagging
from .ids import new_id
from ..index.ops import ListPage
from ..index.versions import VersionPage, is_marker
from . import read_ahead
from .commits import Superseded, current_is, delete_if_current, install, remove_version, version_row
from .contracts import Digests, VersionRecord
from .in_flight import Writes
from .pipeline import EncodePipeline
from .policy import Policy
from .put import ArchiveWriter, QuorumLost, remove_archives
from .records import write_record

log = logging.getLogger("pocket.objects")


class ObjectService:
    def __init__(self, cluster: Cluster, index: Index, writer: IndexWriter, policies: dict[str, Policy],
                 default_policy: str, small_policy: str | None, small_threshold: int,
                 segment_size: int, timeout: float = 10.0, keys: Keyring | None = None):
        self.cluster, self.index, self.writer = cluster, index, writer
        self.policies = policies
        self.default_policy = default_policy
        self.small_policy = small_policy
        self.small_threshold = small_threshold
        self.segment_size = segment_size
        self.timeout = timeout
        self.keys = keys    # server-side encryption (crypto/keys.py); None: only tests without it
        self._removals: set[asyncio.Task] = set()
        self.writes = Writes()   # stored and not yet committed: the scrubber keeps their archives
        # Told of every version stored on fewer than k+m disks: {index: (kind, reason)}.
        self.on_degraded: Callable[[dict, dict], None] | None = None

    def policy_for(self, size_hint: int | None, requested: str | None = None) -> Policy:
        if requested:
            return self.policies[requested]
        if self.small_policy and size_hint is not None and size_hint <= self.small_threshold:
            return self.policies[self.small_policy]
        return self.policies[self.default_policy]

    # writes ------------------------------------------------------------------------------
    async def put(self, bucket: str, key: str, body: AsyncIterable[bytes], size_hint: int | None,
                  digests: Digests, attrs: dict, policy_name: str | None = None,
                  condition: Callable[[VersionRecord | None], None] | None = None, *,
                  version_id: str | None = None, sealing: Sealing | None = None) -> VersionRecord:
        """Store a new version of bucket/key; returns its record once it is durable.

        `condition(current_record_or_None)` runs inside the index transaction that
        installs the version (conditional writes); if it raises, the new archives
        are removed and the exception propagates. In a bucket with versioning Enabled,
        `attrs` carries `"versioned": True` (the handler decides, see commits.py).
        `version_id` and `attrs["created"]` are for copies of another store's versions
        (storage/migrate/): the id places the version among the key's others, `created`
        is its Last-Modified."""
        record = await self.store(body, size_hint, digests, {"bucket": bucket, "key": key, **attrs}, policy_name,
                                  version_id=version_id, sealing=sealing)
        self.forget_all(await self.commit(record, lambda ops: install(ops, bucket, key, record, condition)))
        return record

    async def store(self, body: AsyncIterable[bytes], size_hint: int | None, digests: Digests, fields: dict,
                    policy_name: str | None = None, *, version_id: str | None = None,
                    sealing: Sealing | None = None) -> VersionRecord:
        """Write a body as the fragment archives of a new version; returns its record.

        The record (also each archive's trailer manifest) is `fields` plus where and how
        the bytes were stored; nothing is indexed yet (see `commit`). PutObject and
        UploadPart both come through here. `digests` is fed every byte (off the event
        loop for big segments) and its `finish()` may raise to refuse the body (bad MD5,
        checksum, truncated body); refusing aborts every archive, so nothing remains.
        With `sealing`, each segment is encrypted before it is encoded (crypto/).
        The version counts as in flight (`writes`) until `commit` or `discard` is done with it."""
        version_id = version_id or new_id()
        self.writes.begin(version_id)
        try:
            with self.cluster.writing():
                return await self._store(body, size_hint, digests, fields, policy_name, version_id, sealing)
        except BaseException:
            self.writes.end(version_id)     # its archives were removed (abort), or are orphans now
            raise

    async def _store(self, body, size_hint, digests: Digests, fields: dict, policy_name: str | None,
                     version_id: str | None, sealing: Sealing | None) -> VersionRecord:
        policy = self.policy_for(size_hint, policy_name)
        cipher, sse = self.keys.seal(sealing, version_id) if sealing else (None, None)
        volume = choose_volume(list(self.cluster.volumes.values()), policy.codec.n, version_id,
                               self.cluster.is_writable)
        stored_segment = self.segment_size + (layout.SEAL_BYTES if cipher else 0)
        writer = ArchiveWriter(self.cluster, policy.codec, volume, version_id, stored_segment,
                               policy.quorum, self.timeout)
        pipeline = EncodePipeline(writer, policy.codec, digests, cipher.seal if cipher else None)
        try:
            writer.start()
            size = 0
            async for segment in _segments(body, self.segment_size):
                size += len(segment)
                await pipeline.put(segment)
            await pipeline.finish()
            summary = digests.finish(size)
            if cipher:
                fields = {**fields, "sse": sse}
                if sse["mode"] != SSE_S3:   # S3's ETag of an SSE-C or SSE-KMS object is not its MD5
                    summary = {**summary, "etag": cipher.opaque_etag(summary["etag"])}
            record: VersionRecord = {
                "v": 1, "created": time.time(), **fields, "version_id": version_id, "size": size,
                "policy": policy.name, "k": policy.codec.k, "m": policy.codec.m,
                "segment_size": self.segment_size, "volume": volume["id"], "disks": volume["disks"],
                "archive_format": layout.FORMAT_VERSION, **summary,
            }
            written = await writer.finish(record)
        except BaseException as e:
            pipeline.close()
            await asyncio.shield(writer.abort(repr(e)))
            raise
        missing = {a.index: ("missing", f"not written: {a.error or 'did not commit'}")
                   for a in writer.archives if a.index not in written}
        if missing:
            log.warning("stored %s/%s on %d of %d disks; the missing fragments %s are queued for repair",
                        fields.get("bucket"), fields.get("key"), len(written), policy.codec.n, sorted(missing))
            if self.on_degraded:
                self.on_degraded(record, missing)
        return record

    async def commit(self, record: VersionRecord, fn: Callable):
        """Run `fn(ops)` in the next index commit; if that fails, the record is discarded.

        Not when the caller is cancelled: the batch it joined still commits, so its archives
        are left alone (if the commit did fail, they are orphans for the scrubber), and the
        version stays in flight until that batch is done."""
        committing = asyncio.ensure_future(self.writer.submit(fn))
        committing.add_done_callback(lambda f: (self.writes.end(record["version_id"]),
                                                f.cancelled() or f.exception()))
        try:
            return await asyncio.shield(committing)
        except asyncio.CancelledError:
            raise
        except Exception:
            await asyncio.shield(self.discard(record))
            raise

    async def discard(self, record: VersionRecord) -> None:
        """Undo a version or delete marker that is on the disks but whose index commit failed.

        Its client was told the write failed (a refused conditional PUT's 412 too), so
        `pocket index rebuild` must never install it. Its archives are removed; when a disk
        that may hold one cannot be asked, or the version is itself a record on the disks
        (a delete marker), `end_version` makes sure."""
        self.writes.end(record["version_id"])
        if is_marker(record) or not await self.remove(record):
            await self.end_version(record)

    async def end_version(self, record: VersionRecord) -> None:
        """Write a `version-deleted` record ending exactly this never-committed version.

        On a write quorum, like every record, so an index rebuild finds it whichever disks
        are back. Without a quorum nothing more can be done now: said loudly, with what
        a rebuild would do."""
        volume, policy = self.home_of(record)
        what = f"{record['bucket']}/{record['key']} version {record['version_id']}"
        try:
            await self.put_records(volume, {"kind": "version-deleted", "bucket": record["bucket"], "key": record["key"],
                                            "version_id": record["version_id"], "null": False, "uncommitted": True,
                                            "deleted": time.time()}, policy.quorum)
            log.info("%s was never committed; a version-deleted record keeps `pocket index rebuild` from "
                     "installing it, and the scrubber removes archives left on disks that were down", what)
        except QuorumLost as e:
            log.error("%s was never committed, but its archives or records may remain on disks that are down and "
                      "no version-deleted record could be written (%s): until the scrubber removes them, `pocket "
                      "index rebuild` could install this version; don't rebuild before the disks are back", what, e)

    def forget_all(self, records: list[dict]) -> None:
        """`forget` each displaced record that has archives (delete markers have none)."""
        for record in records:
            if not is_marker(record):
                self.forget(record)

    def forget(self, record: VersionRecord) -> None:
        """Remove a replaced or deleted version's archives (all its parts'), in the background.

        Their deletes wait for no fsync of their own: the commit that dropped the version
        (after a tombstone, or for a newer version) is what an index rebuild goes by, and an
        archive a power cut brings back is an orphan the scrubber removes."""
        task = asyncio.ensure_future(self.remove(record, durable=False))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def drain(self, timeout: float = 5.0) -> None:
        """Give background removals a moment to finish (at shutdown); the scrubber gets the rest."""
        if self._removals:
            await asyncio.wait(set(self._removals), timeout=timeout)

    async def remove(self, record: VersionRecord, durable: bool = True) -> bool:
        """Remove a version's archives now; for a multipart object, every part's.

        False if some disk could not be asked (an archive may remain there). `durable`:
        each delete fsync'd before this returns (remove_archives)."""
        limit = asyncio.Semaphore(16)

        async def one(volume_id, version_id):
            volume = self.cluster.volumes.get(volume_id)
            if not volume:
                return 0
            async with limit:
                return await remove_archives(self.cluster, volume, version_id, durable=durable)
        return not any(await asyncio.gather(*(one(vol, vid) for vol, vid in parts.versions(record))))

    async def delete(self, bucket: str, key: str, owner: str = "", if_version: str | None = None,
                     marker_fields: dict | None = None) -> VersionRecord | None:
        """DeleteObject without a version id; returns the removed record or the new delete marker.

        Never-versioned bucket: the tombstone is on a quorum of disks before the index
        forgets the key. Versioned bucket: a delete marker (a "null" one while Suspended,
        replacing the null version) is written to the disks, then becomes the latest.
        `if_version` (an internal version id; lifecycle expiration): only while that version
        is current, checked again inside the index commit, so a PUT committed meanwhile (in
        this process or another) is never deleted; returns None when it is not.
        `marker_fields` (a copied delete marker: its version ids and Last-Modified) go
        into the marker of a versioned bucket."""
        state = ((await self.index.call(self.index.get_bucket, bucket)) or {}).get("versioning")
        condition = current_is(if_version) if if_version is not None else None
        try:
            if condition:
                condition(await self.index.call(self.index.get_object, bucket, key))   # fail fast, before anything is written
            if state is None:
                record = await self.index.call(self.index.get_object, bucket, key)
                if record is None and condition is None:
                    # A key the index does not have gets a tombstone too: a PUT whose reply
                    # was lost may have left a whole version on the disks without its index
                    # commit, and an index rebuild would bring that back after this DELETE
                    # was acknowledged. (Its empty version id ends versions up to its own id.)
                    volume, policy = self.record_home(new_id())
                    await self.put_records(volume, {"kind": "tombstone", "bucket": bucket, "key": key,
                                                    "version_id": "", "deleted": time.time()}, policy.quorum)
                    return None
                return None if record is None else await self._tombstone(record)
            marker = {"v": 1, "bucket": bucket, "key": key, "version_id": new_id(), "created": time.time(),
                      "delete_marker": True, "owner": owner, **({"versioned": True} if state == "Enabled" else {}),
                      **(marker_fields or {})}
            volume, policy = self.record_home(marker["version_id"])
            await self.put_records(volume, {"kind": "delete-marker", "object": marker}, policy.quorum)
            self.forget_all(await self.commit(marker, lambda ops: install(ops, bucket, key, marker, condition)))
        except Superseded:
            return None
        return marker

    async def delete_version(self, bucket: str, key: str, version_id: str, expect: str | None = None,
                             bypass_governance: bool = False) -> VersionRecord | None:
        """Delete one version or delete marker for good, by its S3 version id ("null" too).

        The call lifecycle expiration uses for noncurrent versions. A `version-deleted`
        record goes to a write quorum of disks first, so a disk that was down cannot bring
        the version back in an index rebuild; then the index forgets it (when it was the
        latest, the next older version becomes current again) and its archives are removed.
        Returns the removed record, or None if there is no such version. `expect` (an
        internal id; lifecycle expiration): only that version, so "null" never resolves to
        a null version written after the caller looked. A version Object Lock protects
        raises ObjectLocked (locks.py), judged again inside the index transaction; refused
        there, a `delete-refused` record voids the version-deleted record for the rebuild."""
        record = await self.index.call(self.index.get_version, bucket, key, version_id)
        if record is None or (expect is not None and record["version_id"] != expect):
            return None
        locks.check_deletable(record, bypass_governance)
        # Never a key-wide tombstone here, even for a key's only (null) version: a version
        # written meanwhile must survive a rebuild. A null version-deleted record ends
        # only null versions up to it.
        volume, policy = self.home_of(record)
        rec_id = await self.put_records(volume, {"kind": "version-deleted", "bucket": bucket, "key": key,
                                                 "version_id": record["version_id"],
                                                 "null": not record.get("versioned"), "deleted": time.time()},
                                        policy.quorum)

        def remove(ops):
            locks.check_deletable(version_row(ops, bucket, key, record["version_id"]), bypass_governance)
            return remove_version(ops, bucket, key, record["version_id"])
        try:
            removed = await self.writer.submit(remove)
        except locks.ObjectLocked:
            try:
                await self.put_records(volume, {"kind": "delete-refused", "bucket": bucket, "key": key,
                                                "version_id": record["version_id"], "record": rec_id}, policy.quorum)
            except QuorumLost as e:
                log.error("%s/%s version %s is locked and kept in the index, but its refused deletion could not be "
                          "voided on the disks (%s): `pocket index rebuild` would drop this version, so don't run "
                          "one; the index keeps it safe meanwhile", bucket, key, record["version_id"], e)
            raise
        if removed is not None and not is_marker(removed):
            await self.remove(removed)  # before the reply: a caller expiring many versions is paced by it
        return removed

    async def _tombstone(self, record: VersionRecord) -> VersionRecord | None:
        """Delete a key's only version: tombstone on the disks, then the index forgets the key."""
        bucket, key = record["bucket"], record["key"]
        volume = self.cluster.volumes[record["volume"]]
        tomb = {"kind": "tombstone", "bucket": bucket, "key": key, "version_id": record["version_id"],
                "deleted": time.time()}
        await self.put_records(volume, tomb, self.policy_of(record).quorum)
        removed = await self.writer.submit(lambda ops: delete_if_current(ops, bucket, key, record["version_id"]))
        if removed is not None:
            self.forget(removed)
        return removed

    def policy_of(self, record: VersionRecord) -> Policy:
        return self.policies.get(record["policy"]) or Policy.parse(record["policy"], f"ec:{record['k']}+{record['m']}")

    def home_of(self, record: VersionRecord) -> tuple[dict, Policy]:
        """Where the disk records about a version go: its own volume, a marker's record home."""
        if is_marker(record):
            return self.record_home(record["version_id"])
        return self.cluster.volumes[record["volume"]], self.policy_of(record)

    def record_home(self, record_id: str) -> tuple[dict, Policy]:
        """Where a record with no archives of its own (a delete marker) is kept: a default-policy volume."""
        policy = self.policies[self.default_policy]
        volume = choose_volume(list(self.cluster.volumes.values()), policy.codec.n, record_id, self.cluster.is_writable)
        return volume, policy

    async def put_records(self, volume: dict, doc: dict, quorum: int) -> str:
        """Write a small durable record (tombstone, bucket event) to the disks of a volume."""
        rec_id, ok = await write_record(self.cluster, volume["disks"], doc, self.timeout)
        if ok < quorum:
            raise QuorumLost(f"{doc['kind']} record reached {ok} disks, need {quorum}")
        return rec_id

    async def amend(self, bucket: str, key: str, kind: str, changes: dict,
                    version_id: str | None = None, check: Callable[[dict], None] | None = None) -> dict | None:
        """Change a version's tags, ACL or lock without rewriting it (see tagging.py)."""
        return await tagging.amend(self, bucket, key, kind, changes, version_id, check)

    # reads: the handlers' only way to the index, so a migrating bucket's reads can be routed
    # (async because a routed read may go to another store: storage/migrate/routing.py)
    async def head(self, bucket: str, key: str) -> VersionRecord | None:
        record = read_ahead.take_object(bucket, key)
        return await self.index.call(self.index.get_object, bucket, key) if record is read_ahead.MISS else record

    async def get_version(self, bucket: str, key: str, version_id: str) -> dict | None:
        """The version or delete marker whose S3 version id is `version_id` ("null" too)."""
        return await self.index.call(self.index.get_version, bucket, key, version_id)

    async def latest_version(self, bucket: str, key: str) -> dict | None:
        """The newest row of a key's history: a delete marker when the key looks deleted."""
        return await self.index.call(self.index.latest_version, bucket, key)

    async def list_objects(self, bucket: str, **query) -> ListPage:
        return await self.index.call(self.index.list_objects, bucket, ahead=True, **query)

    async def list_versions(self, bucket: str, **query) -> VersionPage:
        return await self.index.call(self.index.list_versions, bucket, **query)

    def read(self, record: VersionRecord, start: int, end: int, on_damage: Callable | None = None,
             customer_key: bytes | None = None) -> AsyncIterator[bytes]:
        """Stream bytes start..end (inclusive) of an object version (decrypted: an SSE-C
        object needs its `customer_key`, which the S3 layer has checked)."""
        return reads.stream(self.cluster, self.keys, record, start, end, on_damage, customer_key)


async def _segments(body: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """The body cut into segments of `size` bytes (the last may be shorter).

    Each byte is copied once, by the join that makes its segment (a bytearray buffer
    copied it three times: append, slice, bytes). Chunks are held as views until then,
    so one that is not immutable bytes is copied first."""
    parts: list = []
    held = 0
    async for chunk in body:
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)
        if not parts and len(chunk) == size:
            yield chunk
            continue
        view = memoryview(chunk)
        while view:
            take = min(size - held, len(view))
            parts.append(view[:take])
            held += take
            view = view[take:]
            if held == size:
                yield b"".join(parts)
                parts, held = [], 0
    if parts:
        yield b"".join(parts)
