"""Where a completed multipart object's bytes live: its parts, each a version of its own.

A multipart object's record has no archives of its own. It lists its parts in order,
each with the version id, volume, disks and policy its archives were written with
(`{"number", "size", "etag", "version_id", "volume", "disks", "k", "m", "segment_size",
"policy", "checksums"}`), so reads, deletes and the index rebuild need nothing but the record.
"""
from __future__ import annotations

import hashlib
from typing import Iterator

MIN_PART_SIZE = 5 << 20  # S3's minimum for every part but the last
PART_FIELDS = ("size", "etag", "version_id", "volume", "disks", "k", "m", "segment_size", "policy")


def is_multipart(record: dict) -> bool:
    return "parts" in record


def part_entry(number: int, part: dict) -> dict:
    """What an object record keeps of one stored part."""
    entry = {"number": number, **{f: part[f] for f in PART_FIELDS}, "checksums": part.get("checksums") or {}}
    if part.get("sse"):   # the part's own data key (wrapped) or salt: each part is sealed apart
        entry["sse"] = part["sse"]
    if "archive_format" in part:   # absent: a part stored before keyed checksums (layout.accepted)
        entry["archive_format"] = part["archive_format"]
    return entry


def multipart_etag(part_etags: list[str]) -> str:
    """S3's multipart ETag: md5 of the concatenated binary part MD5s, then "-N"."""
    digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in part_etags)).hexdigest()
    return f"{digest}-{len(part_etags)}"


def part_record(record: dict, part: dict) -> dict:
    """A readable version record for one part of a multipart object."""
    return {"bucket": record["bucket"], "key": record["key"], **part}


def versions(record: dict) -> list[tuple[str, str]]:
    """(volume id, version id) of every archive set that holds the record's bytes."""
    if is_multipart(record):
        return [(p["volume"], p["version_id"]) for p in record["parts"]]
    return [(record["volume"], record["version_id"])]


def spans(record: dict, start: int, end: int) -> Iterator[tuple[dict, int, int]]:
    """(part, first, last) byte ranges within the parts that cover start..end of the object."""
    offset = 0
    for part in record["parts"]:
        lo, hi = offset, offset + part["size"] - 1
        offset += part["size"]
        if part["size"] == 0 or hi < start:
            continue
        if lo > end:
            return
        yield part, max(start, lo) - lo, min(end, hi) - lo


def part_range(record: dict, number: int) -> tuple[int, int] | None:
    """Byte range (first, last) of the `number`-th part (1-based); None if there is none.

    Parts count by position, 1..x-amz-mp-parts-count, whatever numbers the upload used
    (MinIO does the same). An object uploaded in one piece is one part (as in S3)."""
    if not is_multipart(record):
        return (0, record["size"] - 1) if number == 1 else None
    if not 1 <= number <= len(record["parts"]):
        return None
    offset = sum(p["size"] for p in record["parts"][:number - 1])
    return offset, offset + record["parts"][number - 1]["size"] - 1


def parts_count(record: dict) -> int | None:
    return len(record["parts"]) if is_multipart(record) else None
