"""Per-object bookkeeping of migrations out of S3, in the `migrate` table of the index.

Three kinds of entry, each under its bucket so that one bucket's work is one range scan:

    b"r" + bucket + 0 + range number (4 bytes)  ->  a backfill range and its lease
    b"d" + bucket + 0 + encoded key             ->  a key written since it was last verified
    b"j" + bucket + 0 + sequence (8 bytes)      ->  a write still owed to one side (journal)
    b"n" + timestamp (8 bytes, ms) + nonce      ->  a copy request the gateway took (gateway_copy.py)

Ranges split a bucket's keys so that several `pocket migrate copy` workers (several
machines, with a shared index) each lease one, record how far they got, and hand it back;
a lease that is not renewed expires, so a killed worker's range is taken over. Dirty keys
are what a cutover must re-verify; a verify clears a key only if no write came after it
(the sequence number it read is still the key's). The journal is durable before the
request that owes it is answered; the gateway's retry loop drains it.

These are functions of an index transaction (`ops`), like repairs.py, so a write and its
bookkeeping commit together, on any backend (the table is one of backend.TABLES: a
named LMDB database, or `pocket_migrate` in PostgreSQL from schema version 2 on).
Bucket names never contain a NUL byte (keys.py).
"""
from __future__ import annotations

import struct
import time
from typing import Iterator

from . import keys as K
from .backend import prefix_end
from .ops import IndexTxn, _pack, _unpack

TABLE = "migrate"
_RANGE, _DIRTY, _JOURNAL, _NONCE = b"r", b"d", b"j", b"n"
NONCES_PRUNED = 64        # expired nonce records dropped per admission, at most
_SEQ = "migrate/seq"


class LeaseLost(Exception):
    """Another worker holds this range now (ours expired): stop working on it."""


def _prefix(kind: bytes, bucket: str) -> bytes:
    return kind + K.bucket_bytes(bucket) + K.SEP


def _scan(ops: IndexTxn, prefix: bytes) -> Iterator[tuple[bytes, dict]]:
    for k, v in ops.txn.range(TABLE, prefix, prefix_end(prefix)):
        yield k, _unpack(v)["rec"]


def _put(ops: IndexTxn, k: bytes, rec: dict) -> None:
    ops.txn.put(TABLE, k, _pack({"rec": rec}))


def _get(ops: IndexTxn, k: bytes) -> dict | None:
    raw = ops.txn.get(TABLE, k)
    return None if raw is None else _unpack(raw)["rec"]


def _delete(ops: IndexTxn, k: bytes) -> bool:
    return ops.txn.remove(TABLE, k)


def next_seq(ops: IndexTxn) -> int:
    seq = ops.get_meta(_SEQ, 0) + 1
    ops.put_meta(_SEQ, seq)
    return seq


# ---- backfill ranges ------------------------------------------------------------------------
def set_ranges(ops: IndexTxn, bucket: str, bounds: list[tuple[str, str | None]],
               planned: list[tuple[int, int]] | None = None) -> list[dict]:
    """Define a bucket's ranges once: [(start_after, end_inclusive_or_None), ...] in key order,
    with the (keys, bytes) the cut saw in each when `planned` gives them.

    Existing ranges are kept (a re-plan must not undo progress); returns the ranges."""
    existing = ranges(ops, bucket)
    if existing:
        return existing
    out = []
    for no, (start_after, end) in enumerate(bounds):
        rec = {"no": no, "start_after": start_after, "end": end, "position": start_after, "done": False,
               "owner": None, "lease_until": 0.0, "objects": 0, "bytes": 0, "skipped": 0, "errors": 0,
               **({"planned": list(planned[no])} if planned else {})}
        _put(ops, _prefix(_RANGE, bucket) + struct.pack(">I", no), rec)
        out.append(rec)
    return out


def ranges(ops: IndexTxn, bucket: str) -> list[dict]:
    return [rec for _, rec in _scan(ops, _prefix(_RANGE, bucket))]


def lease_range(ops: IndexTxn, bucket: str, owner: str, ttl: float, now: float | None = None) -> dict | None:
    """Lease the first range that is not done and not leased by a live worker (or None)."""
    now = time.time() if now is None else now
    for k, rec in _scan(ops, _prefix(_RANGE, bucket)):
        if rec["done"] or (rec["owner"] not in (None, owner) and rec["lease_until"] > now):
            continue
        rec.update(owner=owner, lease_until=now + ttl)
        _put(ops, k, rec)
        return rec
    return None


def update_range(ops: IndexTxn, bucket: str, no: int, owner: str, ttl: float, *, position: str | None = None,
                 done: bool = False, add: dict | None = None, now: float | None = None) -> dict:
    """Record progress on a leased range and renew the lease; raises LeaseLost if it was taken."""
    now = time.time() if now is None else now
    k = _prefix(_RANGE, bucket) + struct.pack(">I", no)
    rec = _get(ops, k)
    if rec is None or rec["owner"] != owner:
        raise LeaseLost(f"range {no} of {bucket} is leased by {rec and rec['owner']!r} now")
    if position is not None:
        rec["position"] = position
    for name, n in (add or {}).items():
        rec[name] = rec.get(name, 0) + n
    if add:
        rec["updated"] = now     # the copy's latest activity, for the rate `status` shows
    rec["done"] = rec["done"] or done
    rec["lease_until"] = 0.0 if done else now + ttl
    if done:
        rec["owner"] = None
    _put(ops, k, rec)
    return rec


def release_range(ops: IndexTxn, bucket: str, no: int, owner: str) -> None:
    k = _prefix(_RANGE, bucket) + struct.pack(">I", no)
    rec = _get(ops, k)
    if rec is not None and rec["owner"] == owner:
        rec.update(owner=None, lease_until=0.0)
        _put(ops, k, rec)


def reset_ranges(ops: IndexTxn, bucket: str) -> int:
    """Mark every range to be walked again (a new copy pass after a rollback or a failed verify)."""
    n = 0
    for k, rec in list(_scan(ops, _prefix(_RANGE, bucket))):
        rec.update(done=False, position=rec["start_after"], owner=None, lease_until=0.0)
        _put(ops, k, rec)
        n += 1
    return n


# ---- dirty keys -----------------------------------------------------------------------------
def mark_dirty(ops: IndexTxn, bucket: str, key: str) -> int:
    """Record that `key` was written (on either side) since it was last verified; returns its seq."""
    seq = next_seq(ops)
    _put(ops, _prefix(_DIRTY, bucket) + K.encode_key(key), {"key": key, "seq": seq, "at": time.time()})
    return seq


def is_dirty(ops: IndexTxn, bucket: str, key: str) -> bool:
    return _get(ops, _prefix(_DIRTY, bucket) + K.encode_key(key)) is not None


def dirty(ops: IndexTxn, bucket: str, limit: int | None = None) -> list[tuple[str, int]]:
    out = []
    for _, rec in _scan(ops, _prefix(_DIRTY, bucket)):
        out.append((rec["key"], rec["seq"]))
        if limit is not None and len(out) >= limit:
            break
    return out


def dirty_count(ops: IndexTxn, bucket: str) -> int:
    return sum(1 for _ in _scan(ops, _prefix(_DIRTY, bucket)))


def clear_dirty(ops: IndexTxn, bucket: str, key: str, seq: int) -> bool:
    """Forget a dirty key that was verified equal, unless it was written again since `seq`."""
    k = _prefix(_DIRTY, bucket) + K.encode_key(key)
    rec = _get(ops, k)
    if rec is None or rec["seq"] != seq:
        return False
    return _delete(ops, k)


# ---- journal --------------------------------------------------------------------------------
def journal_add(ops: IndexTxn, bucket: str, entry: dict) -> int:
    """Durably owe one write to one side: entry = {"side": "pocket"|"source", "op", "key", ...}."""
    seq = next_seq(ops)
    _put(ops, _prefix(_JOURNAL, bucket) + struct.pack(">Q", seq),
         {**entry, "seq": seq, "bucket": bucket, "added": time.time(), "attempts": 0, "next_try": 0.0,
          "last_error": None})
    return seq


def journal(ops: IndexTxn, bucket: str, limit: int | None = None, due_by: float | None = None) -> list[dict]:
    """Entries in the order they were owed (only those due by `due_by`, when given)."""
    out = []
    for _, rec in _scan(ops, _prefix(_JOURNAL, bucket)):
        if due_by is not None and rec["next_try"] > due_by:
            continue
        out.append(rec)
        if limit is not None and len(out) >= limit:
            break
    return out


def journal_count(ops: IndexTxn, bucket: str) -> int:
    return sum(1 for _ in _scan(ops, _prefix(_JOURNAL, bucket)))


def journal_done(ops: IndexTxn, bucket: str, seq: int) -> bool:
    return _delete(ops, _prefix(_JOURNAL, bucket) + struct.pack(">Q", seq))


def journal_failed(ops: IndexTxn, bucket: str, seq: int, error: str, next_try: float) -> None:
    k = _prefix(_JOURNAL, bucket) + struct.pack(">Q", seq)
    rec = _get(ops, k)
    if rec is not None:
        rec.update(attempts=rec["attempts"] + 1, last_error=error, next_try=next_try)
        _put(ops, k, rec)


def drop_bucket(ops: IndexTxn, bucket: str) -> None:
    """Forget every range, dirty key and journal entry of a bucket (after detach)."""
    for kind in (_RANGE, _DIRTY, _JOURNAL):
        for k, _ in list(_scan(ops, _prefix(kind, bucket))):
            _delete(ops, k)


def admit_nonce(ops: IndexTxn, stamp_ms: int, nonce: str, window_s: float, now: float | None = None) -> bool:
    """Remember a signed request's (timestamp, nonce); False if it was seen before (a
    replay). In the index, so that every gateway process and a restarted one refuse it
    too. Requests older than `window_s` are refused by their timestamp anyway, so their
    records are dropped here, a few per call."""
    k = _NONCE + struct.pack(">Q", stamp_ms) + nonce.encode()
    if ops.txn.get(TABLE, k) is not None:
        return False
    cutoff = int(((time.time() if now is None else now) - window_s) * 1000)
    old = []
    for old_key, _ in ops.txn.range(TABLE, _NONCE, _NONCE + struct.pack(">Q", max(cutoff, 0))):
        old.append(old_key)
        if len(old) >= NONCES_PRUNED:
            break
    for old_key in old:
        ops.txn.remove(TABLE, old_key)
    ops.txn.put(TABLE, k, b"")
    return True
