"""LMDB backend of the index: the only module in Pocket that imports lmdb.

One LMDB environment per gateway (a folder), one named DB per table. The embedded
default: no server to run, reads are memory-mapped and never wait on the network.

Design notes (why things are the way they are):

* The map grows on demand: on ``MapFullError`` the txn is aborted, the map size
  doubled and ``fn`` re-run (``RestartTxn`` carries it out of savepoints).
  ``set_mapsize`` is only safe with no txn open in this process, so every txn holds a
  shared "gate" and growth takes it exclusively.  Readers never hold a txn across a
  yield back to the caller (the index reads in chunks) so growth can't starve or
  deadlock.
* Env is opened with ``sync=True``: a commit is durable.  Throughput comes from
  batching many callers into one commit (see batcher.py), not from weaker
  durability.  A second process may open the same env (``pocket scrub``,
  ``pocket repair`` and ``pocket status`` next to a running gateway): LMDB
  serialises writers across processes, and when the other process has grown
  the map, the next txn here sees ``MapResizedError``, adopts the new size
  (under the exclusive gate) and retries.
"""
from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import lmdb

from .backend import TABLES, Backend, IndexFull, RestartTxn, Txn

_MIN_FREE = 1 << 20   # below this, a failed commit is blamed on the full filesystem

T = TypeVar("T")


class _Gate:
    """Keeps readers out while the writer needs py-lmdb's env lock to itself.

    * ``shared()``: every txn holds it.  Re-entrant per thread (a thread
      inside a write txn may open a read txn), so a pending exclusive section
      can't deadlock against a thread that already holds it.
    * ``exclusive()``: waits until no txn is open anywhere (``set_mapsize``
      invalidates all open txns of the process).
    * ``pause_readers()``: only stops *new* txns from starting, without
      waiting.  py-lmdb 3.0 aborts a write (or child) txn under an env-wide
      lock that every read op also takes; with several busy reader threads
      that lock is never handed over and an abort was measured to stall for
      minutes.  Pausing new readers lets in-flight ones drain in microseconds.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._active = 0
        self._blocked = 0  # >0 while an exclusive or pause section is open
        self._resizing = False
        self._local = threading.local()
        self._shared = _Shared(self)

    def shared(self) -> "_Shared":
        """A context manager (one object, reused: it keeps no state of its own). Every
        index read takes it, several per small request, so it is a class rather than a
        generator and takes the bare lock rather than the Condition's Python wrapper:
        CPU per uncontended read 1.65 -> 0.75 us, a fifth of a whole get_bucket."""
        return self._shared

    @contextmanager
    def pause_readers(self):
        with self._cv:
            self._blocked += 1
        try:
            yield
        finally:
            with self._cv:
                self._blocked -= 1
                self._cv.notify_all()

    @contextmanager
    def exclusive(self):
        if getattr(self._local, "depth", 0):
            # Waiting for active == 0 would wait for ourselves.
            raise RuntimeError("map growth needed while this thread holds an index txn "
                               "(don't call Index.write inside Index.read)")
        with self._cv:
            while self._resizing:
                self._cv.wait()
            self._resizing = True
            self._blocked += 1
            while self._active:
                self._cv.wait()
        try:
            yield
        finally:
            with self._cv:
                self._resizing = False
                self._blocked -= 1
                self._cv.notify_all()


class _Shared:
    """_Gate.shared(): re-entrant per thread, waits only while an exclusive or pause section is open."""

    __slots__ = ("_gate",)

    def __init__(self, gate: _Gate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        g = self._gate
        local = g._local
        depth = getattr(local, "depth", 0)
        with g._lock:
            while g._blocked and depth == 0:
                g._cv.wait()
            g._active += 1
        local.depth = depth + 1

    def __exit__(self, *exc) -> None:
        g = self._gate
        g._local.depth -= 1
        with g._lock:
            g._active -= 1
            if g._active == 0 and g._blocked:   # only exclusive() waits for no active txn
                g._cv.notify_all()


class _Reading:
    """LmdbBackend.read(): a read txn under the shared gate; after another process grew
    the map (MapResizedError), adopt its size and begin again."""

    __slots__ = ("_b", "_txn")

    def __init__(self, backend: "LmdbBackend") -> None:
        self._b = backend

    def __enter__(self) -> "_Txn":
        b = self._b
        gate = b._gate.shared()
        while True:
            gate.__enter__()
            try:
                txn = b.env.begin(write=False)
            except lmdb.MapResizedError:
                txn = None
            except BaseException:
                gate.__exit__()
                raise
            if txn is not None:
                self._txn = txn
                return _Txn(b, txn, False)
            gate.__exit__()
            b._adopt_map_size()

    def __exit__(self, *exc) -> None:
        try:
            self._txn.abort()
        finally:
            self._b._gate.shared().__exit__()


class _Txn(Txn):
    """One LMDB transaction (or child transaction, for a savepoint)."""

    def __init__(self, backend: "LmdbBackend", txn: lmdb.Transaction, writable: bool):
        self._b = backend
        self._txn = txn
        self._dbs = backend._dbs
        self.writable = writable

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._dbs[table])

    def snapshot(self) -> int | None:
        """LMDB's id of the last write committed before this read began, by any process."""
        return None if self.writable else self._txn.id()

    def put(self, table: str, key: bytes, value: bytes) -> None:
        try:
            self._txn.put(key, value, db=self._dbs[table])
        except lmdb.MapFullError as e:
            raise RestartTxn("LMDB map full") from e

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        try:
            return self._txn.put(key, value, db=self._dbs[table], overwrite=False)
        except lmdb.MapFullError as e:
            raise RestartTxn("LMDB map full") from e

    def remove(self, table: str, key: bytes) -> bool:
        try:
            return self._txn.delete(key, db=self._dbs[table])
        except lmdb.MapFullError as e:
            raise RestartTxn("LMDB map full") from e

    def range(self, table: str, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        cur = self._txn.cursor(db=self._dbs[table])
        if not (cur.set_range(start) if start else cur.first()):
            return
        for k, v in cur:
            if end is not None and k >= end:
                return
            yield k, v

    def range_rev(self, table: str, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        cur = self._txn.cursor(db=self._dbs[table])
        found = cur.set_range(end) if end is not None else cur.last()
        if end is not None:
            found = cur.prev() if found else cur.last()
        while found:
            k = cur.key()
            if k < start:
                return
            yield k, cur.value()
            found = cur.prev()

    def clear(self, table: str) -> None:
        self._txn.drop(self._dbs[table], delete=False)

    def count(self, table: str) -> int:
        return self._txn.stat(self._dbs[table])["entries"]

    @contextmanager
    def savepoint(self):
        child = self._b.env.begin(write=True, parent=self._txn)
        try:
            yield _Txn(self._b, child, True)
        except BaseException:
            with self._b._gate.pause_readers():  # see _Gate: abort can starve
                child.abort()
            raise
        try:
            child.commit()
        except lmdb.MapFullError as e:
            raise RestartTxn("LMDB map full") from e


class LmdbBackend(Backend):
    """One LMDB environment (per gateway).  Thread-safe; see module docstring."""

    local = True

    def __init__(self, path: str, map_size: int = 1 << 30, *,
                 max_map_size: int = 1 << 42, max_readers: int = 512):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.max_map_size = max_map_size
        self.env = lmdb.open(path, map_size=min(map_size, max_map_size), max_dbs=16, subdir=True,
                             sync=True, metasync=True, readahead=False,
                             max_readers=max_readers, lock=True)
        # Reader slots of processes that died holding one (a SIGKILLed gateway worker) would
        # keep old pages from reuse and the file growing; LMDB frees them by pid here.
        self.env.reader_check()
        self._gate = _Gate()
        self._count_lock = threading.Lock()
        self.commits = 0  # committed write txns (for tests/metrics)
        self.map_growths = 0
        self._dbs: dict[str, Any] = {}
        self._dbs = self.write(lambda t: {n: self.env.open_db(n.encode(), txn=t._txn) for n in TABLES})

    def describe(self) -> str:
        return f"lmdb:{self.path}"

    def read(self) -> "_Reading":
        """A read txn as a context manager (a class, not a generator: several per request)."""
        return _Reading(self)

    def write(self, fn: Callable[[_Txn], T]) -> T:
        while True:
            observed = self.env.info()["map_size"]
            try:
                with self._gate.shared():
                    txn = self.env.begin(write=True)
                    try:
                        result = fn(_Txn(self, txn, True))
                        txn.commit()
                    except BaseException:
                        with self._gate.pause_readers():
                            txn.abort()
                        raise
                with self._count_lock:
                    self.commits += 1
                return result
            except (lmdb.MapFullError, RestartTxn):
                self._grow(observed)
            except lmdb.MapResizedError:
                self._adopt_map_size()
            except lmdb.Error as e:
                self._check_room(e)
                raise

    def _check_room(self, error: lmdb.Error) -> None:
        """A commit that failed on a full filesystem (LMDB reports ENOSPC, or EIO after a short
        write) raises IndexFull, which clients see as 507, not as an internal error."""
        free = shutil.disk_usage(self.path).free
        if free < _MIN_FREE:
            raise IndexFull(f"the index filesystem at {self.path} is full ({free} bytes free; LMDB: {error}); "
                            "free space there or move gateway.index to a bigger filesystem") from error

    def _adopt_map_size(self) -> None:
        """Another process grew the map: take its size (no txn of ours may be open)."""
        with self._gate.exclusive():
            self.env.set_mapsize(0)

    def _grow(self, observed: int) -> None:
        with self._gate.exclusive():
            current = self.env.info()["map_size"]
            if current != observed:
                return  # another thread already grew it
            if current >= self.max_map_size:
                raise IndexFull(f"the index at {self.path} reached its size limit of {self.max_map_size} bytes "
                                "(gateway.index_max_size); raise the limit and restart the gateway")
            self.env.set_mapsize(min(current * 2, self.max_map_size))
            self.map_growths += 1

    def stats(self) -> dict:
        with self.read() as t:
            entries = {n: t.count(n) for n in self._dbs}
        info, st = self.env.info(), self.env.stat()
        return {
            "backend": "lmdb",
            "path": self.path,
            "entries": entries,
            "map_size": info["map_size"],
            "max_map_size": self.max_map_size,
            "used_bytes": (info["last_pgno"] + 1) * st["psize"],
            "page_size": st["psize"],
            "readers": info["num_readers"],
            "commits": self.commits,
            "map_growths": self.map_growths,
        }

    def backup(self, dest: str) -> None:
        """LMDB's own consistent copy (one read txn), compacted, fsync'd by the library, while
        writers go on (`pocket index backup`, storage/index_backup.py); the gate keeps a map
        resize out meanwhile."""
        os.makedirs(dest, exist_ok=True)
        with self._gate.shared():
            self.env.copy(dest, compact=True)

    def close(self) -> None:
        self.env.close()
