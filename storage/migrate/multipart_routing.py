"""The migration routing of multipart uploads (routing.py has the object service's).

A multipart upload begun before cutover exists on both sides and its parts are mirrored
as they arrive; it completes on the source first, whatever the state is by then (the
upload record names its source upload, so a transition meanwhile does not move it). One
begun after cutover lives in Pocket and is mirrored whole when it completes, journaled
like any write when the source does not take it.
"""
from __future__ import annotations

import asyncio
import time

from .routing import RoutedObjects, as_source_saw, mirrorable
from .sync import adopt_source_facts, copy_to_source, source_facts


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
        if route is not None:
            mirrorable(bucket, (attrs.get("sse") or {}).get("mode"))
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
                                        lambda: copy_to_source(self.objects.objects, route.store, bucket, key),
                                        route.store)
                return record
            r = await store.complete_upload(key, upload["source_upload"], wanted)
            holder = {}

            async def pocket():
                holder["record"] = await self.multipart.complete(upload, wanted, part_checksums, checksum_of,
                                                                 versioned)
                facts = await source_facts(store, key, r.get("VersionId"))   # on the disks and in the index
                if facts:
                    holder["record"] = await adopt_source_facts(self.objects.objects, holder["record"], facts) \
                        or holder["record"]
            await self.books.follow("pocket", bucket, key, pocket, store)
            record = holder.get("record") or {   # Pocket's copy is journaled: answer with what the source made
                "bucket": bucket, "key": key, "version_id": "null", "etag": r["ETag"].strip('"'), "checksums": {},
                "created": time.time(), "size": 0}
            return as_source_saw(record, r.get("VersionId"))

    async def abort(self, upload: dict) -> None:
        await self.multipart.abort(upload)
        store = await self._store(upload)
        if store is not None:
            await store.abort_upload(upload["key"], upload["source_upload"])
