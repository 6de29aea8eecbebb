"""Listing a source bucket into inventory entries, several prefixes at once.

One ListObjects stream is one request at a time (~1,000 keys per round trip), so a
bucket of many millions of keys takes hours that way. The top level of the bucket is
listed first with a delimiter; each common prefix found is then listed in full by its
own thread. Versioned buckets (and suspended ones, which may keep old versions) are
listed with ListObjectVersions so every version and delete marker is counted.
"""
from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator
from urllib.parse import unquote

from .inventory import Entry

PARALLEL = 8
RANGE_PAGE = 128          # keys per listing page of a bounded copy range (backfill.MIN_RANGE keys or more)


def versioning_of(client, bucket: str) -> str:
    """"Enabled", "Suspended" or "" as GetBucketVersioning says."""
    return client.get_bucket_versioning(Bucket=bucket).get("Status", "") or ""


def list_bucket(client, bucket: str, versioned: bool, parallel: int = PARALLEL) -> list[Entry]:
    """Every object (every version and delete marker when `versioned`) of a bucket.

    A key's versions and delete markers come newest first, in the source's order."""
    if versioned:
        keep_version_order(client)
    top, prefixes = _page_all(client, bucket, versioned, prefix="", delimiter="/")
    entries = list(top)
    if prefixes:
        with ThreadPoolExecutor(max(1, parallel)) as pool:
            for found in pool.map(lambda p: list(_page_all(client, bucket, versioned, p, "")[0]), prefixes):
                entries.extend(found)
    return entries


def first_keys(client, bucket: str, limit: int) -> tuple[list[str], int]:
    """The bucket's first `limit` keys (current objects, in order) and their bytes: enough
    to cut work ranges when no inventory was taken."""
    keys, total = [], 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", ()):
            keys.append(o["Key"])
            total += o.get("Size", 0)
        if len(keys) >= limit:
            break
    return keys, total


def _page_all(client, bucket: str, versioned: bool, prefix: str, delimiter: str) -> tuple[Iterator[Entry], list[str]]:
    op = "list_object_versions" if versioned else "list_objects_v2"
    kwargs = {"Bucket": bucket, "Prefix": prefix, **({"Delimiter": delimiter} if delimiter else {})}
    entries: list[Entry] = []
    prefixes: list[str] = []
    for page in client.get_paginator(op).paginate(**kwargs):
        prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        entries.extend(page_entries(page, versioned))
    return iter(entries), prefixes


def page_entries(page: dict, versioned: bool) -> list[Entry]:
    """The entries of one ListObjectsV2 / ListObjectVersions page, in the source's order."""
    if not versioned:
        return [Entry(o["Key"], size=o.get("Size", 0), etag=o.get("ETag", "").strip('"'),
                      last_modified=o["LastModified"].timestamp(), storage_class=o.get("StorageClass", "STANDARD"))
                for o in page.get("Contents", ())]
    found = {(v["Key"], v.get("VersionId")): _version(v, False) for v in page.get("Versions", ())}
    found.update({(m["Key"], m.get("VersionId")): _version(m, True) for m in page.get("DeleteMarkers", ())})
    ordered = [found.pop(k) for k in page.get("VersionOrder", ()) if k in found] + list(found.values())
    # S3 interleaves a key's versions and markers newest first; some servers (moto) list all
    # versions, then all markers, with Last-Modified in whole seconds. So: the latest first,
    # then newest first by Last-Modified, the listing's order breaking ties.
    position = {id(e): i for i, e in enumerate(ordered)}
    return sorted(ordered, key=lambda e: (e.key.encode(), not e.is_latest, -e.last_modified, position[id(e)]))


def _version(v: dict, marker: bool) -> Entry:
    return Entry(v["Key"], version_id=v.get("VersionId") or "null", is_latest=bool(v.get("IsLatest")),
                 delete_marker=marker, size=0 if marker else v.get("Size", 0),
                 etag="" if marker else v.get("ETag", "").strip('"'),
                 last_modified=v["LastModified"].timestamp(),
                 storage_class="" if marker else v.get("StorageClass", "STANDARD"))


def keep_version_order(client) -> None:
    """boto3 parses ListObjectVersions into separate Versions and DeleteMarkers lists,
    losing how they interleave; a key's history order is in the XML. This hook adds
    `VersionOrder`: [(key, version id)] as the XML has them."""
    if getattr(client, "_pocket_version_order", False):
        return
    client.meta.events.register("before-parse.s3.ListObjectVersions", _version_order)
    client._pocket_version_order = True


def _version_order(response_dict, customized_response_dict, **_):
    if response_dict.get("status_code") != 200:
        return
    try:
        root = ET.fromstring(response_dict["body"])
    except ET.ParseError:
        return
    encoded = any(el.tag.endswith("EncodingType") and (el.text or "") == "url" for el in root)
    order = []
    for el in root:
        if el.tag.endswith("}Version") or el.tag.endswith("}DeleteMarker") or el.tag in ("Version", "DeleteMarker"):
            fields = {child.tag.rpartition("}")[2]: child.text or "" for child in el}
            key = unquote(fields.get("Key", "")) if encoded else fields.get("Key", "")
            order.append((key, fields.get("VersionId")))
    customized_response_dict["VersionOrder"] = order


async def source_keys(client, bucket: str, versioned: bool, start_after: str, end: str | None):
    """(key, history newest first) for keys after `start_after` up to `end`, as the source lists them now."""
    loop = asyncio.get_running_loop()
    op = "list_object_versions" if versioned else "list_objects_v2"
    kwargs = {"Bucket": bucket}
    if start_after:
        kwargs["KeyMarker" if versioned else "StartAfter"] = start_after
    # a bounded range holds a few hundred keys at most: pages of 1,000 keys would be parsed
    # (by botocore, ~25 us a key) mostly past its end, once per range
    paging = {"PaginationConfig": {"PageSize": RANGE_PAGE}} if end is not None else {}
    pages = client.get_paginator(op).paginate(**kwargs, **paging)
    it = iter(pages)
    current, history = None, []
    end_b = end.encode() if end is not None else None
    while True:
        page = await loop.run_in_executor(None, next, it, None)
        if page is None:
            break
        for e in page_entries(page, versioned):
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
    op = "list_object_versions" if versioned else "list_objects_v2"
    history = []
    pages = client.get_paginator(op).paginate(Bucket=bucket, Prefix=key,
                                              PaginationConfig={"PageSize": 100 if versioned else 1})
    for page in pages:
        for e in page_entries(page, versioned):
            if e.key != key:
                return history
            history.append(_history_entry(e))
    return history


def _history_entry(e: Entry) -> dict:
    return {"version_id": e.version_id, "delete_marker": e.delete_marker, "size": e.size,
            "etag": e.etag, "last_modified": e.last_modified}
