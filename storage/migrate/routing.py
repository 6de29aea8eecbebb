"""The migration routing: the object and multipart services as a migrating bucket needs them.

The S3 handlers only ever call the object and multipart services (the one door); the
gateway hands them these wrappers, which pass every other bucket straight through. For a
bucket in dual-write, backfilled, verified or cutover (routes.py):

- Writes go to both sides, the authoritative one first. Its failure fails the request;
  the other side's failure is journaled in the index before the reply (index/
  migrations.py) and retried by journal.py. Every written key is marked dirty first, so
  cutover waits for it to be verified again.
- Before cutover a PUT's bytes are stored in Pocket first *without* being indexed: they
  are checked (Content-MD5, checksums) and then streamed from Pocket to the source; only
  when the source took them does Pocket's index commit make them visible. So no body is
  held in memory or spooled, and a refused or failed write leaves nothing on either side.
- Reads and listings come from the authoritative side: before cutover a record from the
  source (`"source": True`) is read from the source.
- A multipart upload begun before cutover exists on both sides and its parts are mirrored
  as they arrive; it completes on the source first, whatever the state is by then. One
  begun after cutover lives in Pocket and is mirrored whole when it completes.

Known limits: by-version-id requests address Pocket's ids (a source's own version ids
are not valid Pocket ids), and canned ACL changes are applied to Pocket only.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..index import migrations
from ..objects.commits import install
from .routes import KeyLocks, Route, Routes
from .source_store import SourceUnavailable
from .sync import copy_from_source, copy_to_source

log = logging.getLogger("pocket.migrate")


class Bookkeeping:
    """Dirty keys and the journal, written through the index writer (durable before the reply)."""

    def __init__(self, objects, metrics):
        self.objects, self.metrics = objects, metrics

    async def dirty(self, bucket: str, key: str) -> None:
        await self.objects.writer.submit(lambda ops: migrations.mark_dirty(ops, bucket, key))

    async def owe(self, bucket: str, key: str, side: str, error: BaseException, op: str = "sync") -> None:
        log.warning("%s/%s: the write reached the authoritative side but not %s (%s); journaled, it is retried "
                    "until it does", bucket, key, side, error)
        await self.objects.writer.submit(lambda ops: migrations.journal_add(
            ops, bucket, {"side": side, "op": op, "key": key, "error": str(error)[:500]}))
        self.metrics.writes.labels(bucket, side, "journaled").inc()

    async def follow(self, side: str, bucket: str, key: str, work) -> None:
        """Apply a write to the follower side; journal it if that fails. Shielded: once the
        authoritative side has the write, a client hanging up must not leave it unfollowed."""
        async def apply():
            try:
                await work()
                self.metrics.writes.labels(bucket, side, "ok").inc()
            except Exception as e:
                await self.owe(bucket, key, side, e)
        await asyncio.shield(apply())

    async def lead(self, side: str, bucket: str, work):
        """Apply a write to the authoritative side; its failure fails the request."""
        try:
            result = await work()
        except Exception:
            self.metrics.writes.labels(bucket, side, "failed").inc()
            raise
        self.metrics.writes.labels(bucket, side, "ok").inc()
        return result


class RoutedObjects:
    def __init__(self, objects, routes: Routes, locks: KeyLocks, books: Bookkeeping):
        self.objects, self.routes, self.locks, self.books = objects, routes, locks, books

    def __getattr__(self, name):   # everything not routed is the object service's own
        return getattr(self.objects, name)

    async def _reader(self, bucket: str) -> Route | None:
        route = await self.routes.aget(bucket)
        if route is not None and route.source_first:
            self.books.metrics.source_reads.labels(bucket).inc()
            return route
        return None

    async def _owned(self, record: dict | None) -> dict | None:
        if record is not None:
            index = self.objects.index
            record["owner"] = ((await index.call(index.get_bucket, record["bucket"])) or {}).get("owner", "")
        return record

    # reads -----------------------------------------------------------------------------------
    async def head(self, bucket: str, key: str) -> dict | None:
        route = await self._reader(bucket)
        if route is None:
            return await self.objects.head(bucket, key)
        return await self._owned(await route.store.head(bucket, key))

    async def get_version(self, bucket: str, key: str, version_id: str) -> dict | None:
        route = await self._reader(bucket)
        if route is None:
            return await self.objects.get_version(bucket, key, version_id)
        return await self._owned(await route.store.head(bucket, key, version_id))

    async def latest_version(self, bucket: str, key: str) -> dict | None:
        if await self._reader(bucket) is None:
            return await self.objects.latest_version(bucket, key)
        return None   # (only decorates a NoSuchKey with the delete marker's headers)

    async def list_objects(self, bucket: str, **query):
        route = await self._reader(bucket)
        if route is None:
            return await self.objects.list_objects(bucket, **query)
        return await route.store.list_objects(bucket, **query)

    async def list_versions(self, bucket: str, **query):
        route = await self._reader(bucket)
        if route is None:
            return await self.objects.list_versions(bucket, **query)
        return await route.store.list_versions(bucket, **query)

    def read(self, record: dict, start: int, end: int, on_damage=None, customer_key=None):
        if record.get("source"):
            m = self.routes.known(record["bucket"])   # refreshed by the head that found the record
            if m is None:
                raise SourceUnavailable(f"{record['bucket']} is no longer migrating; read it again")
            return self.routes.store(m).read(record, start, end)
        return self.objects.read(record, start, end, on_damage, customer_key)

    # writes ----------------------------------------------------------------------------------
    async def put(self, bucket: str, key: str, body, size_hint, digests, attrs: dict, policy_name=None,
                  condition=None, sealing=None) -> dict:
        route = await self.routes.aget(bucket)
        if route is None:
            return await self.objects.put(bucket, key, body, size_hint, digests, attrs, policy_name, condition,
                                          sealing=sealing)
        async with self.locks.hold(bucket, key):
            await self.books.dirty(bucket, key)
            if not route.source_first:
                record = await self.books.lead(route.leader, bucket, lambda: self.objects.put(
                    bucket, key, body, size_hint, digests, attrs, policy_name, condition, sealing=sealing))
                await self.books.follow(route.follower, bucket, key, lambda: route.store.put_from(self.objects, record))
                return record
            if condition is not None:
                condition(await route.store.head(bucket, key))
            record = await self.objects.store(body, size_hint, digests, {"bucket": bucket, "key": key, **attrs},
                                              policy_name, sealing=sealing)
            try:
                source_version = await self.books.lead(route.leader, bucket,
                                                       lambda: route.store.put_from(self.objects, record))
            except BaseException:
                await asyncio.shield(self.objects.discard(record))
                raise
            if source_version and source_version != "null":
                record["s3_version_id"] = source_version   # (the field mig-data's copier sets)

            async def commit():
                self.objects.forget_all(await self.objects.commit(
                    record, lambda ops: install(ops, bucket, key, record)))
            await self.books.follow(route.follower, bucket, key, commit)
            return _as_source_saw(record, source_version)

    async def delete(self, bucket: str, key: str, owner: str = "", if_version: str | None = None) -> dict | None:
        route = await self.routes.aget(bucket)
        if route is None or if_version is not None:   # (lifecycle expiration: Pocket's own rules)
            return await self.objects.delete(bucket, key, owner, if_version)
        async with self.locks.hold(bucket, key):
            await self.books.dirty(bucket, key)
            if not route.source_first:
                removed = await self.books.lead(route.leader, bucket, lambda: self.objects.delete(bucket, key, owner))
                await self.books.follow(route.follower, bucket, key, lambda: route.store.delete(key))
                return removed
            r = await self.books.lead(route.leader, bucket, lambda: route.store.delete(key))
            await self.books.follow(route.follower, bucket, key, lambda: self.objects.delete(bucket, key, owner))
            if r.get("DeleteMarker") and r.get("VersionId"):
                return {"bucket": bucket, "key": key, "version_id": r["VersionId"], "versioned": True,
                        "delete_marker": True, "created": time.time()}
            return None

    async def delete_version(self, bucket: str, key: str, version_id: str, expect: str | None = None,
                             bypass_governance: bool = False) -> dict | None:
        route = await self.routes.aget(bucket)
        if route is None or expect is not None:
            return await self.objects.delete_version(bucket, key, version_id, expect, bypass_governance)
        async with self.locks.hold(bucket, key):
            await self.books.dirty(bucket, key)
            if not route.source_first:
                removed = await self.books.lead(route.leader, bucket,
                                                lambda: self.objects.delete_version(bucket, key, version_id,
                                                                                    None, bypass_governance))
                await self.books.follow(route.follower, bucket, key,
                                        lambda: copy_to_source(self.objects, route.store, bucket, key))
                return removed
            r = await self.books.lead(route.leader, bucket, lambda: route.store.delete(key, version_id))
            await self.books.follow(route.follower, bucket, key,
                                    lambda: copy_from_source(self.objects, route.store, bucket, key))
            return {"bucket": bucket, "key": key, "version_id": version_id, "versioned": version_id != "null",
                    **({"delete_marker": True} if r.get("DeleteMarker") else {})}

    async def amend(self, bucket: str, key: str, kind: str, changes: dict, version_id: str | None = None,
                    check=None):
        route = await self.routes.aget(bucket)
        if route is None:
            return await self.objects.amend(bucket, key, kind, changes, version_id, check)
        async with self.locks.hold(bucket, key):
            await self.books.dirty(bucket, key)
            if not route.source_first:
                updated = await self.books.lead(route.leader, bucket, lambda: self.objects.amend(
                    bucket, key, kind, changes, version_id, check))
                if updated is not None and kind == "tags":
                    await self.books.follow(route.follower, bucket, key,
                                            lambda: copy_to_source(self.objects, route.store, bucket, key))
                return updated
            there = await route.store.head(bucket, key, version_id)
            if there is None:
                return None
            if kind == "tags":
                await self.books.lead(route.leader, bucket, lambda: route.store.put_tags(key, changes["tags"], version_id))

            async def pocket():
                if await self.objects.amend(bucket, key, kind, changes, version_id, check) is None and kind == "tags":
                    await copy_from_source(self.objects, route.store, bucket, key)   # not backfilled yet
            await self.books.follow(route.follower, bucket, key, pocket)
            return there


def _as_source_saw(record: dict, source_version: str | None) -> dict:
    """What the client is answered with: the source's version id while the source is authoritative."""
    if not source_version or source_version == "null":
        return record
    return {**record, "version_id": source_version, "versioned": True}


class RoutedMultipart:
    def __init__(self, multipart, objects: RoutedObjects):
        self.multipart, self.objects = multipart, objects
        self.routes, self.locks, self.books = objects.routes, objects.locks, objects.books

    def __getattr__(self, name):
        return getattr(self.multipart, name)

    async def _store(self, upload: dict):
        """The source an upload was begun on (it finishes there, whatever the state is now)."""
        if not upload.get("source_upload"):
            return None
        m = await self.routes.amigration(upload["bucket"])
        return self.routes.store(m) if m is not None else None

    async def create(self, bucket: str, key: str, attrs: dict, policy_name=None, checksum=None) -> dict:
        route = await self.routes.aget(bucket)
        if route is None or not route.source_first:
            return await self.multipart.create(bucket, key, attrs, policy_name, checksum)
        source_upload = await self.books.lead(route.leader, bucket, lambda: route.store.create_upload(key, attrs))
        try:
            return await self.multipart.create(bucket, key, attrs, policy_name, checksum,
                                               extra={"source_upload": source_upload})
        except BaseException:
            await asyncio.shield(route.store.abort_upload(key, source_upload))
            raise

    async def upload_part(self, upload: dict, number: int, body, size_hint, digests, sealing=None) -> dict:
        record = await self.multipart.upload_part(upload, number, body, size_hint, digests, sealing)
        store = await self._store(upload)
        if store is not None:   # the source has this upload too: it needs every part, or Complete fails there
            await store.upload_part(self.objects.objects, upload["key"], upload["source_upload"], number, record)
        return record

    async def complete(self, upload: dict, wanted, part_checksums=None, checksum_of=None, versioned=False,
                       condition=None) -> dict:
        """`condition` (If-Match / If-None-Match) is held atomically when Pocket completes;
        an upload begun at the source is checked by the handler before it gets here."""
        bucket, key = upload["bucket"], upload["key"]
        route, store = await self.routes.aget(bucket), await self._store(upload)
        if route is None and store is None:
            return await self.multipart.complete(upload, wanted, part_checksums, checksum_of, versioned, condition)
        async with self.locks.hold(bucket, key):
            await self.books.dirty(bucket, key)
            if store is None:   # begun in Pocket: complete here, then the source is owed the object whole
                record = await self.multipart.complete(upload, wanted, part_checksums, checksum_of, versioned,
                                                       condition)
                await self.books.follow("source", bucket, key,
                                        lambda: copy_to_source(self.objects.objects, route.store, bucket, key))
                return record
            r = await store.complete_upload(key, upload["source_upload"], wanted)
            holder = {}

            async def pocket():
                holder["record"] = await self.multipart.complete(upload, wanted, part_checksums, checksum_of,
                                                                 versioned)
            await self.books.follow("pocket", bucket, key, pocket)
            record = holder.get("record") or {   # Pocket's copy is journaled: answer with what the source made
                "bucket": bucket, "key": key, "version_id": "null", "etag": r["ETag"].strip('"'), "checksums": {},
                "created": time.time(), "size": 0}
            return _as_source_saw(record, r.get("VersionId"))

    async def abort(self, upload: dict) -> None:
        await self.multipart.abort(upload)
        store = await self._store(upload)
        if store is not None:
            await store.abort_upload(upload["key"], upload["source_upload"])
