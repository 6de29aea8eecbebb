"""The narrow interface every index backend implements (the model is Garage's src/db).

A backend stores named tables of bytes -> bytes, each sorted by key bytes, and runs
transactions over them. Everything S3 means by those bytes (objects, versions,
uploads, the repair queue, buckets, disks, meta, migrations) is written once above this seam, in
ops.py and its neighbours; a backend module is the only one that imports its driver.

A write transaction is a function `fn(txn)`: the backend may run it more than once
(LMDB after growing its map, PostgreSQL after a serialization failure), so `fn` must
have no effect outside the transaction. Savepoints let one failing part of a batch
roll back alone (the group-committing writer runs one per caller).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

TABLES = ("byvolume", "buckets", "objects", "volumes", "meta", "uploads", "parts", "repair", "versions", "migrate")


class MetadataIndexError(Exception):
    """Base class for index errors."""


class IndexFull(MetadataIndexError):
    """The index's storage has no room for a commit; nothing was committed."""


class IndexUnavailable(MetadataIndexError):
    """The index cannot be reached (a database down or failing over); nothing was committed.

    Clients see 503 SlowDown, which SDKs retry; the backend reconnects by itself."""


class Conflicted(MetadataIndexError):
    """A write kept conflicting with other writers (PostgreSQL serialization failures or
    deadlocks) through every retry; nothing of it was committed.

    Clients see 503 SlowDown, which SDKs retry; the writer first splits a batch that keeps
    conflicting, so only the writes that conflict themselves get this."""


class RestartTxn(Exception):
    """The whole transaction must be run again (map grown, serialization conflict).

    Raised out of any txn method; savepoints and per-caller error handling must let it
    through so the backend's `write` can retry the transaction from the start."""


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound)."""
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


class Txn:
    """One transaction's view of the tables. Used only in the thread that opened it."""

    writable: bool

    def get(self, table: str, key: bytes) -> bytes | None:
        raise NotImplementedError

    def get_many(self, table: str, keys: list[bytes]) -> list[bytes | None]:
        """get() of several keys, in their order (one round trip on a networked backend)."""
        return [self.get(table, k) for k in keys]

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Insert or replace."""
        raise NotImplementedError

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        """Insert unless the key exists; False (and no change) if it does."""
        raise NotImplementedError

    def remove(self, table: str, key: bytes) -> bool:
        raise NotImplementedError

    def range(self, table: str, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) with start <= key < end, ascending. Lazy: stop early for free."""
        raise NotImplementedError

    def range_rev(self, table: str, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) with start <= key < end, descending."""
        raise NotImplementedError

    def clear(self, table: str) -> None:
        raise NotImplementedError

    def count(self, table: str) -> int:
        raise NotImplementedError

    def savepoint(self) -> AbstractContextManager[Txn]:
        """A nested transaction: its changes roll back alone if the block raises."""
        raise NotImplementedError

    def snapshot(self) -> int | None:
        """An id that two reads share only if nothing was committed between them (None:
        the backend has none, so no read can be reused; see list_ahead.py)."""
        return None


class Backend:
    """A store of named tables: read snapshots and retried write transactions."""

    # False: calls may wait on the network, so asyncio code must not make them on the loop.
    local: bool = True
    commits: int = 0

    def read(self) -> AbstractContextManager[Txn]:
        """A read-only snapshot. Keep it short: never hold it across an await."""
        raise NotImplementedError

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run fn in one write transaction, commit durably, return its result (fn may re-run)."""
        raise NotImplementedError

    def describe(self) -> str:
        """Where the index is, for logs and errors (no secrets)."""
        raise NotImplementedError

    def stats(self) -> dict:
        raise NotImplementedError

    def backup(self, dest: str) -> None:
        """A consistent copy of the whole index into the folder `dest` (empty or absent)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
