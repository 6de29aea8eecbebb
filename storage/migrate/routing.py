"""The migration routing: the object and multipart services as a migrating bucket needs them.

The S3 handlers only ever call the object and multipart services (the one door); the
gateway hands them these wrappers (the multipart one in multipart_routing.py), which pass every other bucket straight through. For a
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
  source (`"source": True`) is read from the source, except a key verified equal since
  its last write and still the source's current version, which Pocket serves
  (`_verified_copy`).
- Multipart uploads: multipart_routing.py.

Tags, canned ACLs, legal holds and retentions are mirrored like writes. What cannot be
mirrored is refused with a 400 before anything changes: SSE-C writes (the key is the
client's) and ACLs with explicit grants (they name Pocket's users). SSE-S3/KMS writes
reach the source with the same SSE settings.

Known limit: by-version-id requests address Pocket's ids (a source's own version ids
are not valid Pocket ids).
"""
from __future__ import annotations

import asyncio
import logging
import time

from botocore.exceptions import ClientError

from ..crypto.keys import SSE_C, SSE_KMS
from ..index import migrations
from ..objects.commits import install
from ..s3 import errors
from .routes import KeyLocks, Route, Routes
from .source_store import SourceUnavailable
from .sync import (adopt_source_facts, copy_from_source, copy_to_source, marker_facts, mirror_version,
                   same_object, source_facts)

log = logging.getLogger("pocket.migrate")


class Bookkeeping:
    """Dirty keys and the journal, written through the index writer (durable before the reply)."""

    def __init__(self, objects, metrics):
        self.objects, self.metrics = objects, metrics

    async def dirty(self, bucket: str, key: str) -> None:
        await self.objects.writer.submit(lambda ops: migrations.mark_dirty(ops, bucket, key))

    async def owe(self, bucket: str, key: str, side: str, error: BaseException | str, op: str = "sync") -> None:
        log.warning("%s/%s: the write reached the authoritative side but not %s (%s); journaled, it is retried "
                    "until it does", bucket, key, side, error)
        await self.objects.writer.submit(lambda ops: migrations.journal_add(
            ops, bucket, {"side": side, "op": op, "key": key, "error": str(error)[:500]}))
        self.metrics.writes.labels(bucket, side, "journaled").inc()

    async def follow(self, side: str, bucket: str, key: str, work, store=None) -> None:
        """Apply a write to the follower side; journal it if that fails. Shielded: once the
        authoritative side has the write, a client hanging up must not leave it unfollowed.

        With `store` (the source), the key is then compared on both sides (`agree`) and
        journaled if they differ: KeyLocks order one process's writes to a key, but the
        gateway runs several workers, and two PUTs of one key through two of them can reach
        the follower in the opposite order of the leader's, leaving it the older version.
        The last follower write to land sees that, and the journal's retry (sync.py: the
        leader's *current* state, repeated until the sides agree) converges them."""
        async def apply():
            try:
                await work()
                self.metrics.writes.labels(bucket, side, "ok").inc()
                if store is not None and not await self.agree(store, bucket, key):
                    await self.owe(bucket, key, side, "overtaken by a concurrent write of the key")
            except Exception as e:
                await self.owe(bucket, key, side, e)
        await asyncio.shield(apply())

    async def agree(self, store, bucket: str, key: str) -> bool:
        """Both sides hold the same current version of `key` (sync.same_object's fields)."""
        index = self.objects.index
        here = await index.call(index.get_object, bucket, key)
        kms = ((here or {}).get("sse") or {}).get("mode") == SSE_KMS
        return same_object(here, await store.head(bucket, key), etag=not kms)

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
    def __init__(self, objects, multipart, routes: Routes, locks: KeyLocks, books: Bookkeeping):
        self.objects, self.routes, self.locks, self.books = objects, routes, locks, books
        self.plain_multipart = multipart     # (a retry copies a multipart object part by part)

    def __getattr__(self, name):   # everything not routed is the object service's own
        return getattr(self.objects, name)

    async def _reader(self, bucket: str) -> Route | None:
        route = await self.routes.aget(bucket)
        if route is not None and route.source_first:
            self.books.metrics.source_reads.labels(bucket).inc()
            return route
        return None

    async def _verified_copy(self, route: Route, bucket: str, key: str) -> dict | None:
        """Pocket's record of a key it may answer before cutover, or None (the source answers).

        A verify ran and the key is not dirty (every write through the gateway marks it, and
        verify marks what it found different), and the source's current version is still the
        one Pocket holds: same ETag, size and Last-Modified (Pocket keeps the source's by
        construction). That last check is one HEAD, no bytes: an application still writing
        to S3 directly may have overwritten or deleted the key since the verify, and Pocket
        must not answer with the old bytes or a 404 while the source's listing shows the
        new ones. The bytes, the egress, are what reading from Pocket saves. With the source
        unreachable the verified copy is served: nothing through the gateway changed it."""
        if not route.migration.last_verify or await self.objects.index.call(_dirty, self.objects.index, bucket, key):
            return None
        here = await self.objects.head(bucket, key)
        if here is None:
            return None
        try:
            there = await route.store.stat(key)
        except SourceUnavailable:
            return here
        if there is None or (here["etag"], here["size"], int(here["created"])) != \
                (there["etag"], there["size"], int(there["created"])):
            return None
        return here

    async def _owned(self, record: dict | None) -> dict | None:
        if record is not None:
            index = self.objects.index
            record["owner"] = ((await index.call(index.get_bucket, record["bucket"])) or {}).get("owner", "")
        return record

    def _pull(self, route: Route, bucket: str, key: str):
        """Pocket's current version of a key made the source's again (sync.py)."""
        return copy_from_source(self.objects, self.plain_multipart, route.store, bucket, key)

    # reads -----------------------------------------------------------------------------------
    async def head(self, bucket: str, key: str) -> dict | None:
        route = await self.routes.aget(bucket)
        if route is None or not route.source_first:
            return await self.objects.head(bucket, key)
        here = await self._verified_copy(route, bucket, key)
        if here is not None:
            self.books.metrics.verified_reads.labels(bucket).inc()
            return here
        self.books.metrics.source_reads.labels(bucket).inc()
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
        mirrorable(bucket, (sealing and sealing.mode) or (attrs.get("sse") or {}).get("mode"))
        async with self.locks.hold(bucket, key):
            await self.books.dirty(bucket, key)
            if not route.source_first:
                record = await self.books.lead(route.leader, bucket, lambda: self.objects.put(
                    bucket, key, body, size_hint, digests, attrs, policy_name, condition, sealing=sealing))
                await self.books.follow(route.follower, bucket, key,
                                        lambda: mirror_version(self.objects, route.store, record), route.store)
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
            facts = await source_facts(route.store, key, source_version)
            record.update(facts)   # (s3_version_id: the field mig-data's copier sets)

            async def commit():
                if facts:
                    await keep_source_facts(self.objects, record, facts)
                self.objects.forget_all(await self.objects.commit(
                    record, lambda ops: install(ops, bucket, key, record)))
            await self.books.follow(route.follower, bucket, key, commit, route.store)
            return as_source_saw(record, source_version)

    async def delete(self, bucket: str, key: str, owner: str = "", if_version: str | None = None) -> dict | None:
        route = await self.routes.aget(bucket)
        if route is None or if_version is not None:   # (lifecycle expiration: Pocket's own rules)
            return await self.objects.delete(bucket, key, owner, if_version)
        async with self.locks.hold(bucket, key):
            await self.books.dirty(bucket, key)
            if not route.source_first:
                removed = await self.books.lead(route.leader, bucket, lambda: self.objects.delete(bucket, key, owner))

                async def mirror():
                    r = await route.store.delete(key)
                    if removed is not None and removed.get("delete_marker") and removed.get("versioned") \
                            and r.get("DeleteMarker") and r.get("VersionId"):
                        # the marker takes the source's id and time, as a mirrored version does
                        # (sync.mirror_version): after a rollback the source's are the truth
                        await adopt_source_facts(self.objects, removed,
                                                 await marker_facts(route.store, key, r["VersionId"]))
                await self.books.follow(route.follower, bucket, key, mirror, route.store)
                return removed
            r = await self.books.lead(route.leader, bucket, lambda: route.store.delete(key))
            marker = await marker_facts(route.store, key, r["VersionId"]) \
                if r.get("DeleteMarker") and r.get("VersionId") else None
            await self.books.follow(route.follower, bucket, key,
                                    lambda: self.objects.delete(bucket, key, owner, marker_fields=marker),
                                    route.store)
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
                                        lambda: copy_to_source(self.objects, route.store, bucket, key),
                                        route.store)
                return removed
            r = await self.books.lead(route.leader, bucket, lambda: route.store.delete(key, version_id))
            await self.books.follow(route.follower, bucket, key,
                                    lambda: self._pull(route, bucket, key), route.store)
            return {"bucket": bucket, "key": key, "version_id": version_id, "versioned": version_id != "null",
                    **({"delete_marker": True} if r.get("DeleteMarker") else {})}

    async def amend(self, bucket: str, key: str, kind: str, changes: dict, version_id: str | None = None,
                    check=None):
        """Tags, ACL, legal hold and retention, mirrored like writes. The source judges a change
        it leads (its own Object Lock rules); one it refuses is a 400 naming its reason."""
        route = await self.routes.aget(bucket)
        if route is None:
            return await self.objects.amend(bucket, key, kind, changes, version_id, check)
        if kind == "acl" and not isinstance(changes.get("acl"), str):
            raise errors.InvalidRequest(
                f"Bucket {bucket} is being migrated and ACL changes are mirrored to the source; explicit grants "
                "name Pocket's users, which the source does not know. Use a canned ACL (x-amz-acl) until "
                "`pocket migrate detach`.")

        def to_source():
            if kind == "tags":
                return route.store.put_tags(key, changes["tags"], version_id)
            return _refused_clearly(route.store.put_setting(key, kind, changes, version_id))
        async with self.locks.hold(bucket, key):
            await self.books.dirty(bucket, key)
            if not route.source_first:
                updated = await self.books.lead(route.leader, bucket, lambda: self.objects.amend(
                    bucket, key, kind, changes, version_id, check))
                if updated is not None and kind == "tags":
                    await self.books.follow(route.follower, bucket, key,
                                            lambda: copy_to_source(self.objects, route.store, bucket, key),
                                            route.store)
                elif updated is not None:
                    await self.books.follow(route.follower, bucket, key, to_source)
                return updated
            there = await route.store.head(bucket, key, version_id)
            if there is None:
                return None
            await self.books.lead(route.leader, bucket, to_source)

            async def pocket():
                if await self.objects.amend(bucket, key, kind, changes, version_id, check) is None and kind == "tags":
                    await self._pull(route, bucket, key)   # not backfilled yet
            await self.books.follow(route.follower, bucket, key, pocket, route.store if kind == "tags" else None)
            return there


async def _refused_clearly(work):
    """A change the source refuses (4xx: e.g. no Object Lock on its bucket, a retention its
    rules forbid shortening) is the client's 400, with the source's reason; nothing changed."""
    try:
        return await work
    except SourceUnavailable as e:
        cause = e.__cause__
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) \
            if isinstance(cause, ClientError) else 0
        if 400 <= status < 500:
            error = cause.response.get("Error", {})
            raise errors.InvalidRequest(
                f"The source refused this change ({error.get('Code')}: {error.get('Message')}); it was made on "
                "neither side.") from None
        raise


def mirrorable(bucket: str, sse_mode: str | None) -> None:
    """Refuse, before anything is stored, a write the other side cannot be given: an SSE-C
    object is encrypted with the client's key, which Pocket does not keep, so it could
    never be mirrored and the two sides would diverge."""
    if sse_mode == SSE_C:
        raise errors.InvalidRequest(
            f"Bucket {bucket} is being migrated and every write is mirrored to the other side; an SSE-C object "
            "cannot be (its key is yours, not kept by Pocket). Write it without SSE-C, or after "
            "`pocket migrate detach`.")


def _dirty(index, bucket: str, key: str) -> bool:
    with index.read() as ops:
        return migrations.is_dirty(ops, bucket, key)


async def keep_source_facts(objects, record: dict, facts: dict) -> None:
    """`source_facts` of a dual-written version on a write quorum of its volume's disks
    before the index commit: its archives were sealed before the source answered, and
    `pocket index rebuild` applies this record over their manifest (an application that
    stored the id still finds the version after a rebuild, with the source's Last-Modified)."""
    volume = objects.cluster.volumes[record["volume"]]
    await objects.put_records(volume, {"kind": "s3-version", "bucket": record["bucket"], "key": record["key"],
                                       "version_id": record["version_id"], **facts, "changed": time.time()},
                              objects.policy_of(record).quorum)


def as_source_saw(record: dict, source_version: str | None) -> dict:
    """What the client is answered with: the source's version id while the source is authoritative."""
    if not source_version or source_version == "null":
        return record
    return {**record, "version_id": source_version, "versioned": True}
