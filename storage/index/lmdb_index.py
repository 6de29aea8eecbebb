"""LMDB metadata index: the only module in Pocket that touches LMDB.

One LMDB environment per gateway holds buckets, objects, volumes and misc
meta.  The interface is deliberately narrow (get / put / delete / range scan /
small transactions) so a PostgreSQL backend can implement it later.

Design notes (why things are the way they are):

* All logic lives in ``IndexTxn`` (ops.py, the "ops" object).  ``Index`` methods are
  thin wrappers that open a read txn or run a one-op write txn, and
  ``Index.write(fn)`` hands the same ops object to ``fn`` so callers can
  combine several operations atomically (e.g. put object + bump counters).
* The map grows on demand: on ``MapFullError`` the txn is aborted, the map
  size doubled and ``fn`` re-run.  Consequently ``fn`` may run more than once
  and must not have side effects outside the txn.  ``set_mapsize`` is only
  safe with no txn open in this process, so every txn holds a shared "gate"
  and growth takes it exclusively.  Readers never hold a txn across a yield
  back to the caller (``Index.iter_objects`` reads in chunks) so growth can't
  starve or deadlock.
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

from .versions import Version, VersionPage, VersionTxn
from .ops import (DB_NAMES, BucketNotEmpty, IndexFull, IndexTxn, ListPage, MetadataIndexError,
                  NoSuchBucket)

_MIN_FREE = 1 << 20   # below this, a failed commit is blamed on the full filesystem

__all__ = ["Index", "IndexTxn", "ListPage", "MetadataIndexError", "NoSuchBucket",
           "BucketNotEmpty"]

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
        self._cv = threading.Condition()
        self._active = 0
        self._blocked = 0  # >0 while an exclusive or pause section is open
        self._resizing = False
        self._local = threading.local()

    @contextmanager
    def shared(self):
        depth = getattr(self._local, "depth", 0)
        with self._cv:
            while self._blocked and depth == 0:
                self._cv.wait()
            self._active += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            with self._cv:
                self._active -= 1
                if self._active == 0:
                    self._cv.notify_all()

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


class Index:
    """One LMDB environment (per gateway).  Thread-safe; see module docstring.

    Writes from asyncio code should go through ``IndexWriter`` (batching and
    no blocking of the event loop); direct ``Index`` writes are synchronous,
    one fsync each.
    """

    def __init__(self, path: str, map_size: int = 1 << 30, *,
                 max_map_size: int = 1 << 42, max_readers: int = 512):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.max_map_size = max_map_size
        self.env = lmdb.open(path, map_size=map_size, max_dbs=16, subdir=True,
                             sync=True, metasync=True, readahead=False,
                             max_readers=max_readers, lock=True)
        self._gate = _Gate()
        self._count_lock = threading.Lock()
        self.commits = 0  # committed write txns (for tests/metrics)
        self.map_growths = 0
        self._dbs: dict[str, Any] = {}
        self._dbs = self.write(lambda ops: {
            n: self.env.open_db(n.encode(), txn=ops._txn) for n in DB_NAMES})

    # ---- transactions --------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[IndexTxn]:
        """Read-only snapshot.  Keep it short: don't hold it across awaits."""
        while True:
            with self._gate.shared():
                try:
                    txn = self.env.begin(write=False)
                except lmdb.MapResizedError:
                    txn = None
                if txn is not None:
                    try:
                        yield IndexTxn(self, txn, False)
                    finally:
                        txn.abort()
                    return
            self._adopt_map_size()

    def write(self, fn: Callable[[IndexTxn], T]) -> T:
        """Run ``fn(ops)`` in one write txn and commit; returns fn's result.

        If fn raises, nothing is committed and the exception propagates.  fn
        is re-run after map growth, so it must be free of outside effects.
        """
        while True:
            observed = self.env.info()["map_size"]
            try:
                with self._gate.shared():
                    txn = self.env.begin(write=True)
                    try:
                        result = fn(IndexTxn(self, txn, True))
                        txn.commit()
                    except BaseException:
                        with self._gate.pause_readers():
                            txn.abort()
                        raise
                with self._count_lock:
                    self.commits += 1
                return result
            except lmdb.MapFullError:
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
            if current * 2 > self.max_map_size:
                raise MetadataIndexError(f"LMDB map would exceed max_map_size ({self.max_map_size})")
            self.env.set_mapsize(current * 2)
            self.map_growths += 1

    # ---- convenience wrappers (one txn each) -----------------------------
    def create_bucket(self, name: str, record: dict | None = None) -> bool:
        return self.write(lambda t: t.create_bucket(name, record))

    def put_bucket(self, name: str, record: dict) -> dict | None:
        return self.write(lambda t: t.put_bucket(name, record))

    def get_bucket(self, name: str) -> dict | None:
        with self.read() as t:
            return t.get_bucket(name)

    def delete_bucket(self, name: str) -> bool:
        return self.write(lambda t: t.delete_bucket(name))

    def list_buckets(self) -> list[dict]:
        with self.read() as t:
            return t.list_buckets()

    def bucket_is_empty(self, name: str) -> bool:
        with self.read() as t:
            return t.bucket_is_empty(name)

    def get_object(self, bucket: str, key: str) -> dict | None:
        with self.read() as t:
            return t.get_object(bucket, key)

    def put_object(self, bucket: str, key: str, record: dict) -> dict | None:
        return self.write(lambda t: t.put_object(bucket, key, record))

    def delete_object(self, bucket: str, key: str) -> dict | None:
        return self.write(lambda t: t.delete_object(bucket, key))

    def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "",
                     start_after: str = "", max_keys: int = 1000) -> ListPage:
        with self.read() as t:
            return t.list_objects(bucket, prefix, delimiter, start_after, max_keys)

    def iter_objects(self, bucket: str, start_after: str = "",
                     batch: int = 1000) -> Iterator[tuple[str, dict]]:
        """(key, record) in full-key byte order, read in chunks of ``batch``.

        Each chunk is its own short read txn (no txn is held while the caller
        consumes), so this is not a single snapshot: concurrent writes after
        the current position may or may not be seen.
        """
        while True:
            page = self.list_objects(bucket, start_after=start_after, max_keys=batch)
            yield from page.contents
            if not page.is_truncated:
                return
            start_after = page.next_marker

    def list_versions(self, bucket: str, **query) -> VersionPage:
        """One page of ListObjectVersions (see VersionTxn.list_versions)."""
        with self.read() as t:
            return VersionTxn(t).list_versions(bucket, **query)

    def get_version(self, bucket: str, key: str, version_id: str) -> dict | None:
        """The version (or delete marker) of bucket/key whose S3 id is `version_id`."""
        with self.read() as t:
            return VersionTxn(t).get(bucket, key, version_id)

    def latest_version(self, bucket: str, key: str) -> dict | None:
        """The newest row of a key's history (a delete marker when the key looks deleted)."""
        with self.read() as t:
            return next(VersionTxn(t).key_versions(bucket, key), None)

    def key_history(self, bucket: str, key: str) -> list[dict]:
        """Every version and delete marker of a key with history, newest first ([] if none)."""
        with self.read() as t:
            return list(VersionTxn(t).key_versions(bucket, key))

    def iter_versions(self, bucket: str, batch: int = 1000, prefix: str = "") -> Iterator[Version]:
        """Every version and delete marker of a bucket (of its keys under `prefix`): key
        order, newest first.

        For lifecycle expiration and the scrubber. Keys never versioned yield their one
        ("null") version. Each `Version` has `is_latest`, and `noncurrent_since`: when the
        next newer version (or marker) of its key was created, None for the latest; that
        is when S3's NoncurrentVersionExpiration clock starts. Read in chunks of `batch`,
        each its own short read txn (not one snapshot, like iter_objects)."""
        key_marker = version_marker = ""
        newer: Version | None = None
        while True:
            page = self.list_versions(bucket, prefix=prefix, key_marker=key_marker,
                                      version_id_marker=version_marker, max_keys=batch)
            for v in page.versions:
                if not v.is_latest and newer is not None and newer.key == v.key:
                    v.noncurrent_since = newer.record["created"]
                newer = v
                yield v
            if not page.is_truncated:
                return
            key_marker, version_marker = page.next_key_marker, page.next_version_id_marker

    def get_volumes(self) -> list[dict]:
        with self.read() as t:
            return t.get_volumes()

    def put_volumes(self, volumes: list[dict]) -> None:
        self.write(lambda t: t.put_volumes(volumes))

    def get_meta(self, name: str, default: Any = None) -> Any:
        with self.read() as t:
            return t.get_meta(name, default)

    def put_meta(self, name: str, value: Any) -> None:
        self.write(lambda t: t.put_meta(name, value))

    # ---- lifecycle -------------------------------------------------------
    def stats(self) -> dict:
        with self.read() as t:
            entries = {n: t._txn.stat(db)["entries"] for n, db in self._dbs.items()}
        info, st = self.env.info(), self.env.stat()
        return {
            "path": self.path,
            "entries": entries,
            "map_size": info["map_size"],
            "used_bytes": (info["last_pgno"] + 1) * st["psize"],
            "page_size": st["psize"],
            "readers": info["num_readers"],
            "commits": self.commits,
            "map_growths": self.map_growths,
        }

    def copy_to(self, dest: str) -> None:
        """A consistent copy of the whole index (one read snapshot, compacted) into the empty
        folder `dest`, while writers go on: `pocket index backup` (storage/index_backup.py)."""
        with self._gate.shared():
            self.env.copy(dest, compact=True)

    def close(self) -> None:
        self.env.close()
