"""What the object service takes and gives, written down instead of implied.

The S3 layer hands the service a body and a digest object (s3/digests.py `BodyDigests`
checks Content-MD5, x-amz-content-sha256 and x-amz-checksum-*); repair and lifecycle
read the records the service returns. Both were plain duck-typed objects and dicts read
in four packages; these types name their fields in one place.
"""
from __future__ import annotations

from typing import Protocol, TypedDict


class Digests(Protocol):
    """Fed every byte of a body; `finish` may raise an S3 error to refuse it (the write is
    then aborted and leaves nothing behind)."""

    def update(self, data: bytes) -> None: ...

    def finish(self, size: int) -> dict:
        """The fields the record keeps: `etag` (hex MD5) and `checksums` ({algorithm: base64})."""


class PartEntry(TypedDict, total=False):
    """One part of a completed multipart object, as its record lists it (index/parts.py)."""
    number: int
    size: int
    etag: str
    version_id: str
    volume: str
    disks: list[str]
    k: int
    m: int
    segment_size: int
    policy: str
    checksums: dict[str, str]


class VersionRecord(TypedDict, total=False):
    """One object version as the index stores it and every archive's trailer repeats it.

    Always there: bucket, key, version_id, created. A delete marker has `delete_marker`
    and no bytes; a multipart object has `parts` and no archives of its own; any other
    version has its archives on `disks` of `volume`, cut into `segment_size` segments,
    each encoded k + m."""
    v: int
    bucket: str
    key: str
    version_id: str
    created: float
    size: int
    etag: str
    checksums: dict[str, str]
    checksum_type: str
    policy: str
    k: int
    m: int
    segment_size: int
    volume: str
    disks: list[str]
    parts: list[PartEntry]
    upload_id: str
    owner: str
    content_type: str
    meta: dict[str, str]
    headers: dict[str, str]
    acl: str
    tags: dict[str, str]
    versioned: bool
    delete_marker: bool


class StoreUnavailable(Exception):
    """Another store a request needs (a migrating bucket's source S3) could not be reached
    or refused the request: the S3 layer answers 503, which clients retry. Declared here,
    below both the S3 layer and storage/migrate/, so neither imports the other for it."""
