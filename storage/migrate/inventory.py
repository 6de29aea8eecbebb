"""The inventory of the source: one local SQLite file, so no later question re-lists S3.

Listing billions of keys costs money and hours (37signals read S3 Inventory reports
instead), so `pocket migrate plan` fills this once and `copy`, `verify`, the report and
`pocket migrate query "SQL"` read it. Tables (documented here, they are the interface):

    buckets(bucket PRIMARY KEY, source_bucket, versioning, method, listed_at, objects, bytes)
        versioning: "Enabled" | "Suspended" | "" (never enabled); method: "list" | "inventory"
    objects(bucket, key, version_id, is_latest, delete_marker, size, etag, last_modified,
            storage_class, parts)   PRIMARY KEY (bucket, key, version_id)
        version_id: the source's id, "null" for unversioned objects; last_modified: epoch
        seconds; parts: N of a multipart ETag "…-N", 0 for a single PUT
    plan_order(bucket PRIMARY KEY, position)   the operator's order (`plan --order`)

`buckets.objects` / `bytes` count current (latest, non-marker) objects: what a cutover
serves. A re-plan of a bucket replaces its rows in one transaction.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable
from ..numbers import decimal

if TYPE_CHECKING:
    import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    bucket TEXT PRIMARY KEY, source_bucket TEXT NOT NULL, versioning TEXT NOT NULL DEFAULT '',
    method TEXT NOT NULL, listed_at REAL NOT NULL, objects INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, version_id TEXT NOT NULL DEFAULT 'null',
    is_latest INTEGER NOT NULL DEFAULT 1, delete_marker INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0, etag TEXT NOT NULL DEFAULT '', last_modified REAL NOT NULL DEFAULT 0,
    storage_class TEXT NOT NULL DEFAULT 'STANDARD', parts INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (bucket, key, version_id));
CREATE TABLE IF NOT EXISTS plan_order (bucket TEXT PRIMARY KEY, position INTEGER NOT NULL);
"""


@dataclass
class Entry:
    """One object version or delete marker as the source lists it."""
    key: str
    version_id: str = "null"
    is_latest: bool = True
    delete_marker: bool = False
    size: int = 0
    etag: str = ""
    last_modified: float = 0.0
    storage_class: str = "STANDARD"

    @property
    def parts(self) -> int:
        """N of a multipart ETag ("md5-N"); 0 for an object stored by one PUT."""
        _, dash, n = self.etag.rpartition("-")
        return (decimal(n) or 0) if dash else 0


def path(data_dir: str) -> str:
    return os.path.join(data_dir, "migrate", "inventory.sqlite")


def connect(data_dir: str, create: bool = True, any_thread: bool = False) -> sqlite3.Connection:
    """The inventory of a cluster's data folder (created on first use); `any_thread`: read
    from executor threads too (one at a time)."""
    db_path = path(data_dir)
    if not create and not os.path.exists(db_path):
        raise FileNotFoundError(f"no inventory at {db_path}: run `pocket migrate plan BUCKET` first")
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    import sqlite3            # here: the listing imports Entry from this module, and needs no database
    db = sqlite3.connect(db_path, timeout=30, check_same_thread=not any_thread)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def replace_bucket(db: sqlite3.Connection, bucket: str, source_bucket: str, versioning: str, method: str,
                   entries: Iterable[Entry]) -> dict:
    """Store a bucket's complete listing in place of any earlier one; returns its totals."""
    seen: dict[str, int] = {}

    def rows():
        for e in entries:
            seq = seen[e.key] = seen.get(e.key, -1) + 1
            yield (bucket, e.key, e.version_id or "null", int(e.is_latest), int(e.delete_marker), e.size, e.etag,
                   e.last_modified, e.storage_class or "STANDARD", e.parts, seq)
    with db:
        db.execute("DELETE FROM objects WHERE bucket = ?", (bucket,))
        db.executemany("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows())
        count, total = db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM objects WHERE bucket = ? AND is_latest AND NOT delete_marker",
            (bucket,)).fetchone()
        versions, version_bytes = db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM objects WHERE bucket = ?", (bucket,)).fetchone()
        db.execute("INSERT OR REPLACE INTO buckets VALUES (?,?,?,?,?,?,?)",
                   (bucket, source_bucket, versioning, method, time.time(), count, total))
    # versions: every row copy will write (versions and delete markers), what its progress counts
    return {"bucket": bucket, "objects": count, "bytes": total, "versions": versions, "version_bytes": version_bytes}


def set_order(db: sqlite3.Connection, buckets: list[str]) -> None:
    with db:
        db.execute("DELETE FROM plan_order")
        db.executemany("INSERT INTO plan_order VALUES (?, ?)", ((b, i) for i, b in enumerate(buckets)))


def query(db: sqlite3.Connection, sql: str) -> tuple[list[str], list[tuple]]:
    """Run one read-only statement (`pocket migrate query`): column names and rows."""
    db.execute("PRAGMA query_only = ON")
    try:
        cur = db.execute(sql)
        return [d[0] for d in cur.description or ()], cur.fetchall()
    finally:
        db.execute("PRAGMA query_only = OFF")
