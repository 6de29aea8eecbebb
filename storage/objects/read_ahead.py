"""The records one S3 request will look up first, read before its handler runs.

Authorization and the S3 helpers look up the request's bucket and object with plain
(synchronous) calls, several per request. On LMDB that is a memory-mapped read of
microseconds; on PostgreSQL each is a network round trip that would hold the event
loop. So for a backend that may wait on the network, the S3 front door reads both
records through `Index.call` (off the loop) before dispatching, and `BucketService.get`
and `ObjectService.head` answer from here:

- the bucket record serves every lookup of the request until the request changes the
  bucket (`forget_bucket`, called by BucketService's writes); on a local index it is
  read by the first lookup rather than ahead;
- the object record serves the first lookup only: later ones (after the request may
  have written the object) read the index again.

Scoped to the request's task (a ContextVar), so nothing outlives the request and other
gateways' writes are seen by the next request as before.
"""
from __future__ import annotations

import asyncio
from contextvars import ContextVar

_AHEAD: ContextVar[dict | None] = ContextVar("pocket_read_ahead", default=None)
_MISS = object()


async def read(index, bucket: str, key: str) -> None:
    """Read the request's bucket (and object) records ahead, when the index may wait on the network.

    On a local index nothing is read ahead, but the request still gets its scope: the
    bucket record is kept there by its first lookup (`remember_bucket`), as the
    half-dozen lookups of one small GET cost 8 % of its CPU even on LMDB (py-spy)."""
    if not bucket:
        return
    ahead: dict = {"task": asyncio.current_task()}
    if index.local:
        _AHEAD.set(ahead)
        return
    try:
        ahead[("bucket", bucket)] = await index.call(index.get_bucket, bucket)
        if key:
            ahead[("object", bucket, key)] = await index.call(index.get_object, bucket, key)
    except ValueError:
        pass   # not a valid bucket name or key: the handler says so, reading the index itself
    _AHEAD.set(ahead)


def _mine() -> dict | None:
    """The request's records; never a task's it started (they inherit the context, not the request)."""
    ahead = _AHEAD.get()
    if ahead is None:
        return None
    try:
        return ahead if ahead["task"] is asyncio.current_task() else None
    except RuntimeError:   # not in a task at all
        return None


def bucket(name: str):
    """The bucket record read ahead, or MISS."""
    ahead = _mine()
    return _MISS if ahead is None else ahead.get(("bucket", name), _MISS)


def remember_bucket(name: str, record: dict | None) -> None:
    """Keep a bucket record read by the request for its later lookups."""
    ahead = _mine()
    if ahead is not None:
        ahead[("bucket", name)] = record


def forget_bucket(name: str) -> None:
    ahead = _AHEAD.get()
    if ahead is not None:
        ahead.pop(("bucket", name), None)


def take_object(bucket_name: str, key: str):
    """The object record read ahead (once), or MISS."""
    ahead = _mine()
    return _MISS if ahead is None else ahead.pop(("object", bucket_name, key), _MISS)


MISS = _MISS
