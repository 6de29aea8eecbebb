"""A copy range's keys read from the plan's inventory instead of a listing of the source.

When `pocket migrate plan --inventory` read an S3 Inventory report, the keys, versions,
sizes and ETags of the bucket are in the local inventory already; listing billions of
keys again is the cost and the days the report was taken to avoid (37signals). So `copy`
walks its ranges from the inventory (no LIST request at all), unless `--list`.

What the report cannot know is handled where a listing's staleness is handled already:
a version changed or deleted at the source since the report fails its conditional GET and
its key is listed afresh (backfill.CONVERGE, one short page); writes through the gateway
since `enable` are dual-written. Keys created directly at the source after the report are
not in it: `verify` lists the source (the proof of the move must see it as it is now),
reports them missing and `verify --fix` copies them; or `copy --list` picks them up.
"""
from __future__ import annotations

import asyncio

from . import inventory

CHUNK = 1000     # rows read per hop to the executor


def reported(data_dir: str, bucket: str) -> bool:
    """Whether the plan of `bucket` on this machine came from an S3 Inventory report."""
    try:
        db = inventory.connect(data_dir, create=False)
    except FileNotFoundError:
        return False
    try:
        row = db.execute("SELECT method FROM buckets WHERE bucket = ?", (bucket,)).fetchone()
    finally:
        db.close()
    return bool(row) and row[0] == "inventory"


async def source_keys(data_dir: str, bucket: str, start_after: str, end: str | None):
    """(key, history newest first) for keys after `start_after` up to `end`, as the report
    has them: the same shape as listing.source_keys."""
    loop = asyncio.get_running_loop()
    db = inventory.connect(data_dir, create=False, any_thread=True)
    try:
        cur = db.execute(
            "SELECT key, version_id, delete_marker, size, etag, last_modified FROM objects "
            "WHERE bucket = ? AND key > ? AND (? IS NULL OR key <= ?) "
            "ORDER BY key, is_latest DESC, last_modified DESC, seq", (bucket, start_after, end, end))
        current, history = None, []
        while rows := await loop.run_in_executor(None, cur.fetchmany, CHUNK):
            for key, version_id, marker, size, etag, modified in rows:
                if key != current:
                    if current is not None:
                        yield current, history
                    current, history = key, []
                history.append({"version_id": version_id, "delete_marker": bool(marker), "size": size,
                                "etag": etag, "last_modified": modified})
        if current is not None:
            yield current, history
    finally:
        db.close()
