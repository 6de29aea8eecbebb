"""Copy a whole index from one backend to another (`pocket index copy`), verified.

How an existing cluster moves its index from LMDB to PostgreSQL (or back, or to a
backup folder): every table is copied row by row in key order, in batches of one
transaction each. The rows are the backend-neutral bytes both backends store (the
same encoded keys, the same record envelopes), so nothing is re-encoded.

Resumable: the destination's copy marker (meta "index.copy") names the source; a
copy that stopped part way runs again after the last key each table has in the
destination (pages are copied in key order, one transaction each). A destination holding
anything else is refused, so a copy never mixes two namespaces.

Verified: once every table is copied, both sides are read again and compared by row
counts and an xxh3-128 checksum over every (key, value) in key order; the marker is
removed only when they agree. Run it with the gateways stopped: rows written to the
source during the copy make the verification fail (run it again then).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import xxhash

from . import volume_index
from .backend import TABLES, MetadataIndexError, Txn
from .index import Index
from .ops import _pack, _unpack

MARKER = b"index.copy"
# The volume index is derived: not copied but made again in the destination
# (volume_index.fill), so a copy is complete whether or not the source's was filled yet.
COPIED = tuple(t for t in TABLES if t != volume_index.TABLE)


class CopyMismatch(MetadataIndexError):
    """Source and destination differ after the copy (the source changed, or a write was lost)."""


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)       # per table, in the destination after the copy
    copied: int = 0                                          # rows written by this run
    checksum: str = ""                                       # of all tables, equal on both sides
    resumed: bool = False
    seconds: float = 0.0


def table_digest(index: Index, table: str, batch: int = 5000) -> tuple[int, str]:
    """(rows, xxh3-128 of every key and value in key order) of one table, read in short txns."""
    h, rows, after = xxhash.xxh3_128(), 0, None
    while True:
        page = _page(index, table, after, batch)
        for k, v in page:
            if table == "meta" and k == MARKER:
                continue
            h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
            rows += 1
        if len(page) < batch:
            return rows, h.hexdigest()
        after = page[-1][0]


def _page(index: Index, table: str, after: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
    with index.backend.read() as t:
        out = []
        for k, v in t.range(table, after or b""):
            if k == after:
                continue
            out.append((k, v))
            if len(out) == limit:
                break
        return out


def _last_key(index: Index, table: str) -> bytes | None:
    with index.backend.read() as t:
        for k, _v in t.range_rev(table):
            if not (table == "meta" and k == MARKER):
                return k
    return None


def _claim(src: Index, dst: Index) -> bool:
    """Mark `dst` as a copy of `src` in progress; True when resuming one. Refuses other contents."""
    source = src.describe()

    def claim(t: Txn) -> bool:
        raw = t.get("meta", MARKER)
        if raw is not None:
            marked = _unpack(raw)["value"]
            if marked["source"] != source:
                raise MetadataIndexError(f"{dst.describe()} holds an unfinished copy of {marked['source']}, "
                                         f"not of {source}; finish that one or empty the destination")
            return True
        if any(t.count(name) for name in COPIED):
            raise MetadataIndexError(f"{dst.describe()} already holds an index; copy only into an empty one "
                                     "(for PostgreSQL: a new database with `pocket index migrate-schema` run)")
        t.put("meta", MARKER, _pack({"value": {"source": source, "started": time.time()}}))
        t.clear(volume_index.TABLE)   # made again once every record is copied
        return False
    return dst.backend.write(claim)


def copy_index(src: Index, dst: Index, batch: int = 2000,
               progress: Callable[[str, int], None] = lambda table, rows: None) -> CopyReport:
    """Copy every table of `src` into `dst`, then verify (see module docstring)."""
    started = time.monotonic()
    report = CopyReport(resumed=_claim(src, dst))
    for table in COPIED:
        # a page is one transaction: the destination's last key had everything before it copied
        after = _last_key(dst, table) if report.resumed else None
        while True:
            page = _page(src, table, after, batch)
            if page:
                dst.backend.write(lambda t, rows=page: [t.put(table, k, v) for k, v in rows])
                report.copied += len(page)
                progress(table, report.copied)
            if len(page) < batch:
                break
            after = page[-1][0]
    total = xxhash.xxh3_128()
    for table in COPIED:
        (n_src, d_src), (n_dst, d_dst) = table_digest(src, table), table_digest(dst, table)
        if (n_src, d_src) != (n_dst, d_dst):
            raise CopyMismatch(f"table {table}: source has {n_src} rows (checksum {d_src}), destination "
                               f"{n_dst} ({d_dst}); was a gateway still writing? Stop them and run the copy again")
        report.rows[table] = n_dst
        total.update(d_dst.encode())
    volume_index.fill(dst, force=True)
    dst.backend.write(lambda t: t.remove("meta", MARKER))
    report.checksum = total.hexdigest()
    report.seconds = time.monotonic() - started
    return report
