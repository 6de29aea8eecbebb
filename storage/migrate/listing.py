"""Listing a source bucket into inventory entries, several prefixes at once.

One ListObjects stream is one request at a time (~1,000 keys per round trip), so a
bucket of many millions of keys takes hours that way. The top level of the bucket is
listed first with a delimiter; each common prefix found is then listed in full by its
own thread. Versioned buckets (and suspended ones, which may keep old versions) are
listed with ListObjectVersions so every version and delete marker is counted.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from .inventory import Entry

PARALLEL = 8


def versioning_of(client, bucket: str) -> str:
    """"Enabled", "Suspended" or "" as GetBucketVersioning says."""
    return client.get_bucket_versioning(Bucket=bucket).get("Status", "") or ""


def list_bucket(client, bucket: str, versioned: bool, parallel: int = PARALLEL) -> list[Entry]:
    """Every object (every version and delete marker when `versioned`) of a bucket."""
    top, prefixes = _page_all(client, bucket, versioned, prefix="", delimiter="/")
    entries = list(top)
    if prefixes:
        with ThreadPoolExecutor(max(1, parallel)) as pool:
            for found in pool.map(lambda p: list(_page_all(client, bucket, versioned, p, "")[0]), prefixes):
                entries.extend(found)
    return entries


def _page_all(client, bucket: str, versioned: bool, prefix: str, delimiter: str) -> tuple[Iterator[Entry], list[str]]:
    op = "list_object_versions" if versioned else "list_objects_v2"
    kwargs = {"Bucket": bucket, "Prefix": prefix, **({"Delimiter": delimiter} if delimiter else {})}
    entries: list[Entry] = []
    prefixes: list[str] = []
    for page in client.get_paginator(op).paginate(**kwargs):
        prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        if versioned:
            entries.extend(_version(v, False) for v in page.get("Versions", ()))
            entries.extend(_version(m, True) for m in page.get("DeleteMarkers", ()))
        else:
            entries.extend(Entry(o["Key"], size=o.get("Size", 0), etag=o.get("ETag", "").strip('"'),
                                 last_modified=o["LastModified"].timestamp(),
                                 storage_class=o.get("StorageClass", "STANDARD")) for o in page.get("Contents", ()))
    return iter(entries), prefixes


def _version(v: dict, marker: bool) -> Entry:
    return Entry(v["Key"], version_id=v.get("VersionId") or "null", is_latest=bool(v.get("IsLatest")),
                 delete_marker=marker, size=0 if marker else v.get("Size", 0),
                 etag="" if marker else v.get("ETag", "").strip('"'),
                 last_modified=v["LastModified"].timestamp(),
                 storage_class="" if marker else v.get("StorageClass", "STANDARD"))
