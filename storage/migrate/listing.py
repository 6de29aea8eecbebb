"""Listing a source bucket into inventory entries, several prefixes at once.

One ListObjects stream is one request at a time (~1,000 keys per round trip), so a
bucket of many millions of keys takes hours that way. The top level of the bucket is
listed first with a delimiter; each common prefix found is then listed in full by its
own thread. Versioned buckets (and suspended ones, which may keep old versions) are
listed with ListObjectVersions so every version and delete marker is counted. The
requests and their XML are list_http.py's (no botocore).
"""
from __future__ import annotations

from .inventory import Entry

PARALLEL = 8
RANGE_PAGE = 128          # keys per listing page of a bounded copy range (backfill.MIN_RANGE keys or more)


def versioning_of(client, bucket: str) -> str:
    """"Enabled", "Suspended" or "" as GetBucketVersioning says."""
    return client.lister.versioning(bucket)


def list_bucket(client, bucket: str, versioned: bool, parallel: int = PARALLEL) -> list[Entry]:
    """Every object (every version and delete marker when `versioned`) of a bucket.

    A key's versions and delete markers come newest first, in the source's order."""
    entries, prefixes = _page_all(client, bucket, versioned, prefix="", delimiter="/")
    if prefixes:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max(1, parallel)) as pool:
            for found in pool.map(lambda p: _page_all(client, bucket, versioned, p, "")[0], prefixes):
                entries.extend(found)
    return entries


def first_keys(client, bucket: str, limit: int) -> tuple[dict[str, int], int]:
    """The bucket's first `limit` keys (current objects, in order) with their sizes, and
    their bytes: enough to cut work ranges when no inventory was taken."""
    sizes, total = {}, 0
    for page in client.lister.pages(bucket, False):
        for e in page.entries:
            sizes[e.key] = e.size
            total += e.size
        if len(sizes) >= limit:
            break
    return sizes, total


def _page_all(client, bucket: str, versioned: bool, prefix: str, delimiter: str) -> tuple[list[Entry], list[str]]:
    entries: list[Entry] = []
    prefixes: list[str] = []
    for page in client.lister.pages(bucket, versioned, prefix=prefix, delimiter=delimiter):
        prefixes.extend(page.prefixes)
        entries.extend(page.entries)
    return entries, prefixes


async def source_keys(client, bucket: str, versioned: bool, start_after: str, end: str | None):
    """(key, history newest first) for keys after `start_after` up to `end`, as the source lists them now."""
    import asyncio     # here: `migrate verify --quick` lists without an event loop
    loop = asyncio.get_running_loop()
    # a bounded range holds a few hundred keys at most: pages of 1,000 keys would be fetched
    # and parsed mostly past its end, once per range
    it = iter(client.lister.pages(bucket, versioned, start_after=start_after,
                                  page_size=RANGE_PAGE if end is not None else None))
    current, history = None, []
    end_b = end.encode() if end is not None else None
    while True:
        page = await loop.run_in_executor(None, next, it, None)
        if page is None:
            break
        for e in page.entries:
            if end_b is not None and e.key.encode() > end_b:
                if current is not None:
                    yield current, history
                return
            if e.key != current:
                if current is not None:
                    yield current, history
                current, history = e.key, []
            history.append(_history_entry(e))
    if current is not None:
        yield current, history


def key_history(client, bucket: str, versioned: bool, key: str) -> list[dict]:
    """One key's history, newest first, as the source lists it now: for a key that changed
    while it was copied. Listed by prefix, which costs one short page: the key sorts before
    every longer key that starts with it, so the first other key ends the listing."""
    history = []
    for page in client.lister.pages(bucket, versioned, prefix=key, page_size=100 if versioned else 1):
        for e in page.entries:
            if e.key != key:
                return history
            history.append(_history_entry(e))
    return history


def _history_entry(e: Entry) -> dict:
    return {"version_id": e.version_id, "delete_marker": e.delete_marker, "size": e.size,
            "etag": e.etag, "last_modified": e.last_modified}
