"""Reading an S3 Inventory report instead of listing the bucket.

S3 Inventory writes, per day, a `manifest.json` naming data files (gzipped CSV without a
header, or Parquet) and the `fileSchema` of their columns. Reading those files costs a
few GETs where listing costs one request per thousand keys, which is why 37signals
planned their move from inventories. Keys in CSV reports are URL-encoded; Parquet keys
are plain. The manifest's MD5 of each data file is checked before the file is used.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from datetime import datetime
from typing import Iterator
from urllib.parse import unquote_plus, urlparse

from .inventory import Entry


class ManifestError(ValueError):
    pass


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an s3://bucket/path/manifest.json URL."""
    u = urlparse(url)
    if u.scheme != "s3" or not u.netloc or not u.path.strip("/"):
        raise ManifestError(f"--inventory wants s3://BUCKET/PATH/manifest.json, not {url!r}")
    return u.netloc, u.path.lstrip("/")


def read_manifest(client, url: str) -> dict:
    bucket, key = parse_url(url)
    try:
        manifest = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ValueError as e:
        raise ManifestError(f"{url} is not an S3 Inventory manifest (not JSON: {e})") from None
    for field in ("sourceBucket", "fileFormat", "files"):
        if field not in manifest:
            raise ManifestError(f"{url} is not an S3 Inventory manifest: it has no {field!r}")
    manifest["_bucket"] = manifest.get("destinationBucket", "").removeprefix("arn:aws:s3:::") or bucket
    return manifest


def entries(client, manifest: dict) -> Iterator[Entry]:
    """Every row of every data file the manifest names."""
    fmt = manifest["fileFormat"].upper()
    if fmt not in ("CSV", "PARQUET"):
        raise ManifestError(f"inventory format {manifest['fileFormat']} is not supported (use CSV or Parquet)")
    columns = [c.strip() for c in manifest.get("fileSchema", "").split(",")] if fmt == "CSV" else None
    for f in manifest["files"]:
        data = client.get_object(Bucket=manifest["_bucket"], Key=f["key"])["Body"].read()
        want = f.get("MD5checksum")
        if want and hashlib.md5(data).hexdigest() != want:
            raise ManifestError(f"inventory file {f['key']} does not match the manifest's MD5 (a partial "
                                "or rewritten report); wait for the next report or list the bucket instead")
        yield from (_csv_rows(data, columns) if fmt == "CSV" else _parquet_rows(data))


def _csv_rows(data: bytes, columns: list[str]) -> Iterator[Entry]:
    text = gzip.decompress(data).decode("utf-8") if data[:2] == b"\x1f\x8b" else data.decode("utf-8")
    for row in csv.reader(io.StringIO(text)):
        yield _entry(dict(zip(columns, row)), encoded=True)


def _parquet_rows(data: bytes) -> Iterator[Entry]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ManifestError("Parquet inventories need pyarrow: pip install 'pocket-storage[migrate]'") from None
    table = pq.read_table(io.BytesIO(data))
    for row in table.to_pylist():
        yield _entry({_CANON.get(k.lower().replace("_", ""), k): v for k, v in row.items()}, encoded=False)


# Parquet column names (snake_case) to the CSV fileSchema names.
_CANON = {"bucket": "Bucket", "key": "Key", "versionid": "VersionId", "islatest": "IsLatest",
          "isdeletemarker": "IsDeleteMarker", "size": "Size", "lastmodifieddate": "LastModifiedDate",
          "etag": "ETag", "storageclass": "StorageClass"}


def _entry(row: dict, encoded: bool) -> Entry:
    key = unquote_plus(row["Key"]) if encoded else row["Key"]
    modified = row.get("LastModifiedDate") or 0
    if isinstance(modified, str):
        modified = datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp()
    elif isinstance(modified, datetime):
        modified = modified.timestamp()
    return Entry(key, version_id=row.get("VersionId") or "null", is_latest=_bool(row.get("IsLatest", True)),
                 delete_marker=_bool(row.get("IsDeleteMarker", False)), size=int(row.get("Size") or 0),
                 etag=(row.get("ETag") or "").strip('"'), last_modified=float(modified),
                 storage_class=row.get("StorageClass") or "STANDARD")


def _bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() == "true"
