"""Which records hold archive sets on each volume: the `byvolume` table.

Repair, disk moves, failed-disk rebuilds and disk restore ask "which versions have
fragments on volume V?". Without this table the answer is a scan of the whole index
(every version of every bucket); with it, a range scan of V's entries, so the work is
proportional to the volume, not to the namespace.

    byvolume: volume id \\0 tag + blake2b-16(record's index key)  ->  record's index key

`tag` names the table holding the record: b"o" objects (current versions), b"v"
versions (history of versioned keys), b"p" parts (parts of open multipart uploads).
The hash keeps every entry key short whatever the record key's length (LMDB's 511-byte
limit); the value says which record to read.

Kept in step by `VolumeIndexedTxn`, which `IndexTxn` wraps around every write
transaction: any put, insert, remove or clear of an indexed table updates the entries
in the same transaction, whoever makes it (PUT, DELETE, lifecycle, multipart
completion, repair moving a version, rebuild, migration copies). `pocket index copy`
copies the table verbatim like any other. An index written before this table existed
is filled once by `fill` (LMDB: when the gateway opens it; PostgreSQL: by `pocket index
migrate-schema`, after schema version 3 created the table); until the row `FILLED`
(a key no volume's entries can have: volume ids never start with NUL) says so, readers
fall back to the full scan (durability/sets.py).

Readers resolve each entry to its record and keep only the sets that are on the volume,
so an entry that outlived its record (a crash cannot cause one, but an old Pocket
writing to a filled index could) is harmless.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import AsyncIterator, Iterator

import orjson

from . import parts
from . import keys as K
from .backend import Txn, prefix_end

TABLE = "byvolume"
TAGS = {"objects": b"o", "versions": b"v", "parts": b"p"}
TABLES_BY_TAG = {tag[0]: table for table, tag in TAGS.items()}
FILLED = K.SEP + b"filled"   # in TABLE itself: derived data and its flag are copied and cleared together


def record_volumes(raw: bytes | None) -> set[str]:
    """The volumes a stored record (an envelope, ops._pack) has archive sets on."""
    if raw is None:
        return set()
    rec = orjson.loads(raw)["rec"]
    if rec.get("delete_marker"):
        return set()
    if parts.is_multipart(rec):
        return {p["volume"] for p in rec["parts"] if p.get("volume")}
    return {rec["volume"]} if rec.get("volume") else set()


def record_sets(rec: dict, volume: str) -> list[dict]:
    """The archive sets of one record that are on `volume` (what live_sets yields for it)."""
    if rec.get("delete_marker"):
        return []
    if parts.is_multipart(rec):
        return [parts.part_record(rec, p) for p in rec["parts"] if p.get("volume") == volume]
    return [rec] if rec.get("volume") == volume else []


def volume_prefix(volume: str) -> bytes:
    return volume.encode("utf-8") + K.SEP


def entry_key(volume: str, table: str, key: bytes) -> bytes:
    return volume_prefix(volume) + TAGS[table] + hashlib.blake2b(key, digest_size=16).digest()


class VolumeIndexedTxn(Txn):
    """A write transaction that keeps `byvolume` in step with the tables it indexes.

    Values read by `get` are remembered for the rest of the transaction, so the usual
    read-then-write (put_object reads the previous record) costs no second read on
    PostgreSQL; a savepoint's reads are kept only if it commits."""

    def __init__(self, inner: Txn, seen: dict | None = None):
        self.inner = inner
        self.writable = inner.writable
        self._seen: dict[tuple[str, bytes], bytes | None] = dict(seen or {})

    def _old(self, table: str, key: bytes) -> bytes | None:
        if (table, key) in self._seen:
            return self._seen[(table, key)]
        return self.inner.get(table, key)

    def _update(self, table: str, key: bytes, old: bytes | None, new: bytes | None) -> None:
        before, after = record_volumes(old), record_volumes(new)
        for volume in before - after:
            self.inner.remove(TABLE, entry_key(volume, table, key))
        for volume in after - before:
            self.inner.put(TABLE, entry_key(volume, table, key), key)
        self._seen[(table, key)] = new

    def get(self, table: str, key: bytes) -> bytes | None:
        value = self.inner.get(table, key)
        if table in TAGS:
            self._seen[(table, key)] = value
        return value

    def get_many(self, table: str, keys: list[bytes]) -> list[bytes | None]:
        return self.inner.get_many(table, keys)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        if table not in TAGS:
            return self.inner.put(table, key, value)
        old = self._old(table, key)
        self.inner.put(table, key, value)
        self._update(table, key, old, value)

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        inserted = self.inner.insert(table, key, value)
        if inserted and table in TAGS:
            self._update(table, key, None, value)
        return inserted

    def remove(self, table: str, key: bytes) -> bool:
        if table not in TAGS:
            return self.inner.remove(table, key)
        old = self._old(table, key)
        removed = self.inner.remove(table, key)
        if removed:
            self._update(table, key, old, None)
        return removed

    def range(self, table: str, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.range(table, start, end)

    def range_rev(self, table: str, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.range_rev(table, start, end)

    def clear(self, table: str) -> None:
        """Clearing an indexed table drops its entries too (rebuild clears every table)."""
        self.inner.clear(table)
        if table in TAGS:
            self._seen = {k: v for k, v in self._seen.items() if k[0] != table}
            tag = TAGS[table][0]
            stale = [k for k, _ in self.inner.range(TABLE, FILLED + b"\x00")   # entries, not the flag
                     if k[k.index(K.SEP) + 1] == tag]
            for k in stale:
                self.inner.remove(TABLE, k)
        elif table == TABLE:
            self._seen.clear()

    def count(self, table: str) -> int:
        return self.inner.count(table)

    @contextmanager
    def savepoint(self):
        with self.inner.savepoint() as child:
            nested = VolumeIndexedTxn(child, self._seen)
            yield nested
        self._seen = nested._seen


def add_entries(txn: Txn, table: str, rows: list[tuple[bytes, bytes]]) -> None:
    """Entries for rows already stored (the one-time fill): idempotent puts."""
    for key, raw in rows:
        for volume in record_volumes(raw):
            txn.put(TABLE, entry_key(volume, table, key), key)


def fill(index, batch: int = 2000, force: bool = False) -> int:
    """Index every stored record by volume, a batch per write transaction, unless the
    index says it is done (`force`: anyway); returns the records read. Safe to run again,
    and next to writers: each batch reads its records and writes their entries in one
    transaction, and writers keep entries in step."""
    if is_filled(index) and not force:
        return 0
    seen = 0
    for table in TAGS:
        after = b""
        while True:
            def one(ops, after=after):
                rows = []
                for k, v in ops.txn.inner.range(table, after):
                    if after and k == after:
                        continue
                    rows.append((k, v))
                    if len(rows) == batch:
                        break
                add_entries(ops.txn.inner, table, rows)
                return rows[-1][0] if rows else None, len(rows)
            last, n = index.write(one)
            seen += n
            if n < batch:
                break
            after = last
    index.write(lambda ops: ops.txn.put(TABLE, FILLED, b""))
    return seen


def is_filled(index) -> bool:
    """Whether every record is indexed by volume (else readers scan the whole index)."""
    with index.read() as ops:
        return ops.txn.get(TABLE, FILLED) is not None


def volume_page(index, volume: str, after: bytes = b"", batch: int = 1000) -> tuple[list[dict], bytes | None]:
    """One short read transaction's worth of `volume`'s entries after `after`: (archive sets
    on the volume of the records they name, where to continue or None at the end)."""
    prefix = volume_prefix(volume)
    with index.read() as ops:
        entries = []
        for k, v in ops.txn.range(TABLE, after or prefix, prefix_end(prefix)):
            if k == after:
                continue
            entries.append((k, v))
            if len(entries) == batch:
                break
        by_table: dict[str, list[bytes]] = {}
        for k, v in entries:
            by_table.setdefault(TABLES_BY_TAG[k[len(prefix)]], []).append(v)
        records = []
        for table, keys in by_table.items():
            records += [orjson.loads(raw)["rec"] for raw in ops.txn.get_many(table, keys) if raw is not None]
    sets = [s for rec in records for s in record_sets(rec, volume)]
    return sets, (entries[-1][0] if len(entries) == batch else None)


def volume_sets(index, volume: str, batch: int = 1000) -> Iterator[dict]:
    """Every archive set on `volume` the index references, a page per short read
    transaction (not one snapshot: a set written meanwhile may or may not appear). A
    record in both `objects` and `versions` yields its sets once."""
    after, done = b"", set()
    while after is not None:
        sets, after = volume_page(index, volume, after, batch)
        yield from _new(sets, done)


async def avolume_sets(index, volume: str, batch: int = 1000) -> AsyncIterator[dict]:
    """volume_sets for asyncio code: each page is read through `index.call` (off the loop on PostgreSQL)."""
    after, done = b"", set()
    while after is not None:
        sets, after = await index.call(volume_page, index, volume, after, batch)
        for s in _new(sets, done):
            yield s


def _new(sets: list[dict], done: set[str]) -> Iterator[dict]:
    for s in sets:
        if s["version_id"] not in done:
            done.add(s["version_id"])
            yield s
