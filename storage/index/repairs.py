"""The repair queue in the index: object versions that have lost fragments.

One entry per object version, in the `repair` table, under two kinds of key:

    b"p" + priority byte + version id (16 bytes)   ->  the entry
    b"v" + version id (16 bytes)                    ->  its current b"p" key

The priority byte is `spare + 128`, where `spare = fragments left - k` is how many more
fragments the object can lose before it is lost (negative: already unreadable). Keys
sort by it, so a cursor walk over b"p" hands the repairer the objects with the least
redundancy left first, oldest version first among equals; the b"v" key finds an entry
again when new damage to the same version is reported, so reports merge instead of
piling up. Spare counts, not fragments left, are compared so that a replica:3 object
down to one copy goes before an ec:4+2 object down to five fragments.

An entry:
    {"bucket", "key", "version_id", "volume", "policy", "k", "m",
     "missing": [i, ...], "corrupt": [i, ...], "reasons": {"i": text},
     "sources": ["read" | "scrub" | "put"], "first_seen", "updated",
     "attempts", "last_error"}

These are functions of an `IndexTxn` so that they run inside the same transaction as
other index writes (a degraded PUT commits its object and its queue entry together).

Finished repairs are remembered for MARK_SECONDS, in the meta table (`repaired/<version
id>`: fragment index -> when it was rebuilt or found whole), because damage is reported
from evidence gathered a while before it is queued: a scrub pass fetches the disks'
findings, walks the index, asks again, then queues. A repair finishing in between would
be queued a second time from findings about the bytes it replaced. `add` with `seen`
(when each fragment's evidence was gathered) leaves out fragments repaired since, in
the same transaction as the repair's own `resolve`, so no window remains.
"""
from __future__ import annotations

from typing import Iterator

from .backend import prefix_end
from .ops import IndexTxn, _pack, _unpack

TABLE = "repair"
_ENTRY, _POINTER = b"p", b"v"
REPAIRED = "repaired/"
MARK_SECONDS = 3600.0    # far longer than any evidence takes from being gathered to being queued


def fragments_left(entry: dict) -> int:
    return entry["k"] + entry["m"] - len(set(entry["missing"]) | set(entry["corrupt"]))


def _priority_key(entry: dict) -> bytes:
    spare = fragments_left(entry) - entry["k"]
    return _ENTRY + bytes([max(0, min(255, spare + 128))]) + bytes.fromhex(entry["version_id"])


def _pointer_key(version_id: str) -> bytes:
    return _POINTER + bytes.fromhex(version_id)


def get(ops: IndexTxn, version_id: str) -> dict | None:
    pkey = ops.txn.get(TABLE, _pointer_key(version_id))
    if pkey is None:
        return None
    raw = ops.txn.get(TABLE, pkey)
    return None if raw is None else _unpack(raw)["rec"]


def _store(ops: IndexTxn, entry: dict | None, old: dict | None) -> None:
    if old is not None:
        ops.txn.remove(TABLE, _priority_key(old))
    if entry is None:
        if old is not None:
            ops.txn.remove(TABLE, _pointer_key(old["version_id"]))
        return
    pkey = _priority_key(entry)
    ops.txn.put(TABLE, pkey, _pack({"rec": entry}))
    ops.txn.put(TABLE, _pointer_key(entry["version_id"]), pkey)


def add(ops: IndexTxn, record: dict, bad: dict[int, tuple[str, str]], source: str, now: float,
        seen: dict[int, float] | None = None) -> dict | None:
    """Queue (or merge into the queued entry) fragments of `record` that need rebuilding;
    returns the entry (None: nothing is queued for the version).

    `bad` maps fragment index -> (kind, reason), kind being "missing" or "corrupt";
    `seen` maps an index to when the evidence of its damage was gathered, and a fragment
    repaired at or after that time is left out (the evidence was about replaced bytes)."""
    if seen:
        marks = ops.get_meta(REPAIRED + record["version_id"]) or {}
        bad = {i: v for i, v in bad.items() if marks.get(str(i), float("-inf")) < seen.get(i, float("inf"))}
        if not bad:
            return get(ops, record["version_id"])
    old = get(ops, record["version_id"])
    entry = dict(old) if old else {
        "bucket": record["bucket"], "key": record["key"], "version_id": record["version_id"],
        "volume": record["volume"], "policy": record.get("policy", ""), "k": record["k"], "m": record["m"],
        "missing": [], "corrupt": [], "reasons": {}, "sources": [], "first_seen": now,
        "attempts": 0, "last_error": "",
    }
    missing, corrupt = set(entry["missing"]), set(entry["corrupt"])
    reasons = dict(entry["reasons"])
    for i, (kind, reason) in bad.items():
        if kind == "corrupt":
            corrupt.add(i)
            missing.discard(i)
        elif i not in corrupt:
            missing.add(i)
        reasons[str(i)] = reason
    entry.update(missing=sorted(missing), corrupt=sorted(corrupt), reasons=reasons, updated=now,
                 sources=sorted(set(entry["sources"]) | {source}))
    _store(ops, entry, old)
    return entry


def resolve(ops: IndexTxn, version_id: str, indexes: set[int] | list[int], now: float | None = None) -> dict | None:
    """Forget the given fragment indexes (rebuilt, or found good); drop the entry when none are left.
    With `now`, remember that they were repaired then (see `add`'s `seen`).

    Returns what is still queued for the version, or None."""
    if now is not None and indexes:
        marks = ops.get_meta(REPAIRED + version_id) or {}
        ops.put_meta(REPAIRED + version_id, {**marks, **{str(i): now for i in indexes}})
    old = get(ops, version_id)
    if old is None:
        return None
    gone = set(indexes)
    entry = {**old, "missing": [i for i in old["missing"] if i not in gone],
             "corrupt": [i for i in old["corrupt"] if i not in gone],
             "reasons": {i: r for i, r in old["reasons"].items() if int(i) not in gone}}
    if not entry["missing"] and not entry["corrupt"]:
        entry = None
    _store(ops, entry, old)
    return entry


def forget_repairs(ops: IndexTxn, now: float) -> int:
    """Drop the marks of repairs older than MARK_SECONDS; returns how many versions'."""
    old = [name for name, marks in ops.meta_under(REPAIRED).items()
           if max(marks.values(), default=0.0) < now - MARK_SECONDS]
    for name in old:
        ops.delete_meta(REPAIRED + name)
    return len(old)


def note_failure(ops: IndexTxn, version_id: str, error: str, now: float) -> None:
    old = get(ops, version_id)
    if old is not None:
        _store(ops, {**old, "attempts": old["attempts"] + 1, "last_error": error, "updated": now}, old)


def drop(ops: IndexTxn, version_id: str) -> bool:
    old = get(ops, version_id)
    _store(ops, None, old)
    return old is not None


def scan(ops: IndexTxn, limit: int | None = None) -> list[dict]:
    """Entries in repair order: least spare redundancy first."""
    out = []
    for entry in iter_entries(ops):
        if limit is not None and len(out) >= limit:
            break
        out.append(entry)
    return out


def iter_entries(ops: IndexTxn) -> Iterator[dict]:
    for _k, v in ops.txn.range(TABLE, _ENTRY, prefix_end(_ENTRY)):
        yield _unpack(v)["rec"]


def length(ops: IndexTxn) -> int:
    """Entries queued: half the table's rows (each has its entry and its pointer)."""
    return ops.txn.count(TABLE) // 2
