"""Make one key on one side equal to the other: how a journaled write is finally applied.

A journal entry says only "this key is owed to that side"; whatever happened to the key
since, the retry copies the authoritative side's *current* state, so retries are
idempotent and a later write is never undone by an earlier one replayed. The gateway
holds the key's lock (routing.KeyLocks) around both a request and a retry of that key.
"""
from __future__ import annotations

import base64
import logging

from ..s3.digests import BodyDigests
from .source_store import SourceStore

log = logging.getLogger("pocket.migrate")

_COMPARED = ("etag", "size", "content_type", "meta", "headers", "tags")


def same_object(a: dict | None, b: dict | None) -> bool:
    """Equal as a client sees them: bytes (ETag, size), content type, headers, metadata and tags."""
    if a is None or b is None:
        return a is b
    return all((a.get(f) or None) == (b.get(f) or None) for f in _COMPARED)


def attrs_of(source_record: dict, bucket: dict) -> dict:
    attrs = {f: source_record[f] for f in ("content_type", "meta", "headers") if f in source_record}
    if source_record.get("tags"):
        attrs["tags"] = dict(source_record["tags"])
    attrs["owner"] = bucket.get("owner", "")
    if bucket.get("versioning") == "Enabled":
        attrs["versioned"] = True
    return attrs


async def copy_from_source(objects, store: SourceStore, bucket: str, key: str) -> str:
    """Pocket's current version of `key` becomes the source's (or goes, if the source has none).

    Returns what was done: "same", "copied" or "deleted"."""
    wanted = await store.head(bucket, key)
    current = objects.index.get_object(bucket, key)
    if same_object(current, wanted):
        return "same"
    if wanted is None:
        await objects.delete(bucket, key)
        return "deleted"
    declared = {} if "-" in wanted["etag"] else {"Content-MD5": base64.b64encode(bytes.fromhex(wanted["etag"])).decode()}
    digests = BodyDigests(declared, wanted["size"], None)
    await objects.put(bucket, key, store.read(wanted, 0, wanted["size"] - 1), wanted["size"], digests,
                      attrs_of(wanted, objects.index.get_bucket(bucket) or {}))
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
    await store.put_from(objects, current)
    return "copied"
