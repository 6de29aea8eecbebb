"""Make one key on one side equal to the other: how a journaled write is finally applied.

A journal entry says only "this key is owed to that side"; whatever happened to the key
since, the retry copies the authoritative side's *current* state, so retries are
idempotent and a later write is never undone by an earlier one replayed. The gateway
holds the key's lock (routing.KeyLocks) around both a request and a retry of that key.
"""
from __future__ import annotations

import logging

from ..index.versions import s3_version_id
from ..objects.ids import new_id
from . import copier
from .source_store import SourceStore, SourceUnavailable

log = logging.getLogger("pocket.migrate")

_COMPARED = ("etag", "size", "content_type", "meta", "headers", "tags")


def same_object(a: dict | None, b: dict | None, etag: bool = True) -> bool:
    """Equal as a client sees them: bytes (ETag, size), content type, headers, metadata and
    tags. `etag=False`: an SSE-KMS version's ETag is not its MD5 on S3, so each side makes
    its own and they never match."""
    if a is None or b is None:
        return a is b
    return all((a.get(f) or None) == (b.get(f) or None) for f in _COMPARED if etag or f != "etag")


async def copy_from_source(objects, multipart, store: SourceStore, bucket: str, key: str) -> str:
    """Pocket's current version of `key` becomes the source's (or goes, if the source has none).

    Copied as the backfill copies (copier.py): a multipart object part by part, so it keeps
    its ETag, and with its Last-Modified, headers, metadata, tags, checksums and version id.
    Returns what was done: "same", "copied" or "deleted"."""
    wanted = await store.head(bucket, key)
    current = objects.index.get_object(bucket, key)
    if same_object(current, wanted):
        return "same"
    if wanted is None:
        await objects.delete(bucket, key)
        return "deleted"
    w = copier.Wanted(key, wanted["version_id"], False, wanted["size"], wanted["etag"], wanted["created"], new_id())
    try:
        await copier.copy_version(objects, multipart, store.client, store.bucket, bucket, w, copier.RateLimit(0), [0])
    except copier.SourceChanged as e:   # written again meanwhile: the next retry copies what it is then
        raise SourceUnavailable(f"{e}; retried") from None
    return "copied"


async def copy_to_source(objects, store: SourceStore, bucket: str, key: str) -> str:
    """The source's current version of `key` becomes Pocket's (or is deleted there: a delete
    made in Pocket after cutover is mirrored like a write). Returns "same", "copied" or "deleted"."""
    current = objects.index.get_object(bucket, key)
    there = await store.head(bucket, key)
    if same_object(current, there):
        return "same"
    if current is None:
        await store.delete(key)
        return "deleted"
    await mirror_version(objects, store, current)
    return "copied"


async def source_facts(store, key: str, source_version: str | None) -> dict:
    """What the source made of a version just written there: its version id (none in an
    unversioned bucket) and its Last-Modified (its own clock's, which trails Pocket's by
    the upload; left out if the source cannot say now). A dual-written version takes both."""
    facts = {"s3_version_id": source_version} if source_version and source_version != "null" else {}
    stamped = await store.last_modified(key, source_version)
    if stamped is not None:
        facts["created"] = stamped
    return facts


async def marker_facts(store, key: str, version_id: str) -> dict:
    """`source_facts` of a delete marker the source made: its id (kept as the source
    answered it, "null" too) and its time, which Pocket's own trails."""
    return {"s3_version_id": version_id, **await source_facts(store, key, version_id)}


class _Superseded(Exception):
    """The version was overwritten meanwhile: the newer one keeps its own time."""


async def mirror_version(objects, store: SourceStore, record: dict) -> None:
    """Store a version Pocket leads with at the source, then give it the source's
    Last-Modified. The source stamps its own time when it takes the bytes, after Pocket
    did; left apart, the two sides differ by the upload's length. A rollback makes the
    source authoritative again, and a copy pass that listed the source while this write
    was still on its way there skips the key as written through the gateway: a second
    apart, verify finds "Last-Modified differs" and the next cutover is blocked.

    In a versioned bucket the version takes the source's id too, as a dual-written one does
    before cutover: after a rollback the source's ids are the truth, and verify and the
    copy would otherwise find the version twice (Pocket's id "extra", the source's
    "missing"). Pocket's own id, which the client was answered with, still finds it
    (VersionOps.get looks internal ids up directly)."""
    source_version = await store.put_from(objects, record)
    facts = await source_facts(store, record["key"], source_version)
    if not record.get("versioned"):
        facts.pop("s3_version_id", None)
    if facts:     # (without a time the copy pass and verify still compare it)
        await adopt_source_facts(objects, record, facts)


async def adopt_source_facts(objects, record: dict, facts: dict) -> dict | None:
    """Give `record` what the source made of it (`source_facts`) unless it was
    overwritten meanwhile: the newer version keeps its own time and id. The amended
    record, or None if it was superseded (or is gone)."""
    def same_version(row: dict) -> None:
        if row["version_id"] != record["version_id"]:
            raise _Superseded()
    try:
        return await objects.amend(record["bucket"], record["key"], "s3-version", facts,
                                   s3_version_id(record), check=same_version)
    except _Superseded:
        return None
