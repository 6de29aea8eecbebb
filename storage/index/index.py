"""The metadata index as the rest of Pocket sees it, whatever backend stores it.

`Index` wraps a backend (backend.py) and hands callers the S3-level operations
(`IndexTxn`, ops.py): `read()` is a snapshot, `write(fn)` one transaction, and the
convenience methods below are one of either. `open_index(cfg)` is the one place that
picks the backend from the config; `open_url("lmdb:DIR" | "postgres://...")` the
same for tools that name an index directly (`pocket index copy`).

Calls may wait on the network when the backend is PostgreSQL, so asyncio code reads
through `await index.call(fn, *args)`: inline for LMDB (a local memory-mapped read
costs microseconds, less than a thread hop), in the index's thread pool otherwise.
Writes from asyncio code go through the group-committing `IndexWriter` (batcher.py).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, TypeVar

from .backend import Backend
from .list_ahead import ListAhead
from .ops import IndexTxn, ListPage
from .versions import Version, VersionPage, VersionTxn

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

T = TypeVar("T")

READ_THREADS = 16


class Index:
    """S3-level reads and writes over one backend. Thread-safe."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._readers: ThreadPoolExecutor | None = None
        self.ahead = ListAhead(self)

    @property
    def local(self) -> bool:
        return self.backend.local

    @property
    def commits(self) -> int:
        return self.backend.commits

    def describe(self) -> str:
        return self.backend.describe()

    # ---- transactions --------------------------------------------------
    def read(self) -> "_Snapshot":
        """Read-only snapshot.  Keep it short: don't hold it across awaits."""
        return _Snapshot(self.backend.read())

    def write(self, fn: Callable[[IndexTxn], T]) -> T:
        """Run ``fn(ops)`` in one write txn and commit; returns fn's result.

        If fn raises, nothing is committed and the exception propagates.  fn may be
        re-run (map growth, serialization conflicts), so it must be free of outside effects.
        """
        return self.backend.write(lambda txn: fn(IndexTxn(txn)))

    async def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """`fn(*args)` without blocking the event loop on a backend that may cross the network."""
        if self.backend.local:
            return fn(*args, **kwargs)
        import asyncio       # here: a one-shot command on LMDB (`migrate verify --quick`) runs without it
        from concurrent.futures import ThreadPoolExecutor
        if self._readers is None:
            self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="index-read")
        return await asyncio.get_running_loop().run_in_executor(self._readers, functools.partial(fn, *args, **kwargs))

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
                     start_after: str = "", max_keys: int = 1000, ahead: bool = False) -> ListPage:
        """One page; `ahead` (a client walking page by page, on the event loop) also reads
        the next page while the loop is idle, for the request that will ask for it."""
        query = (bucket, prefix, delimiter, start_after, max_keys)
        with self.read() as t:
            snapshot = t.snapshot()
            page = self.ahead.take(query, snapshot) or t.list_objects(*query)
        if ahead:
            self.ahead.after(query, page, snapshot)
        return page

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
        walk = _VersionWalk(bucket, batch, prefix)
        while not walk.done:
            yield from walk.take(self.list_versions(bucket, **walk.query()))

    async def aiter_versions(self, bucket: str, batch: int = 1000, prefix: str = "") -> AsyncIterator[Version]:
        """iter_versions for asyncio code: each page is read through `call` (off the loop on PostgreSQL)."""
        walk = _VersionWalk(bucket, batch, prefix)
        while not walk.done:
            for v in walk.take(await self.call(self.list_versions, bucket, **walk.query())):
                yield v

    def parts_page(self, after: bytes = b"", batch: int = 1000) -> list[tuple[bytes, dict]]:
        """(row key, part record) of open uploads' parts after `after`, one short read txn."""
        from .uploads import UploadTxn
        with self.read() as t:
            return UploadTxn(t).parts_after(after, batch)

    def open_parts(self, batch: int = 1000) -> Iterator[dict]:
        """Part records of every open multipart upload, a batch per short read txn."""
        after = b""
        while True:
            rows = self.parts_page(after, batch)
            for _, rec in rows:
                yield rec
            if len(rows) < batch:
                return
            after = rows[-1][0]

    async def aopen_parts(self, batch: int = 1000) -> AsyncIterator[dict]:
        """open_parts for asyncio code (each batch read through `call`)."""
        after = b""
        while True:
            rows = await self.call(self.parts_page, after, batch)
            for _, rec in rows:
                yield rec
            if len(rows) < batch:
                return
            after = rows[-1][0]

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
        return self.backend.stats()

    def backup(self, dest: str) -> None:
        """A consistent copy of the whole index into the folder `dest` (see Backend.backup)."""
        self.backend.backup(dest)

    def close(self) -> None:
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        self.backend.close()


class _VersionWalk:
    """Where a walk over a bucket's versions is (markers), and when each became noncurrent."""

    def __init__(self, bucket: str, batch: int, prefix: str):
        self.batch, self.prefix = batch, prefix
        self.key_marker = self.version_marker = ""
        self.newer: Version | None = None
        self.done = False

    def query(self) -> dict:
        return {"prefix": self.prefix, "key_marker": self.key_marker, "version_id_marker": self.version_marker,
                "max_keys": self.batch}

    def take(self, page: VersionPage) -> list[Version]:
        for v in page.versions:
            if not v.is_latest and self.newer is not None and self.newer.key == v.key:
                v.noncurrent_since = self.newer.record["created"]
            self.newer = v
        self.done = not page.is_truncated
        self.key_marker, self.version_marker = page.next_key_marker, page.next_version_id_marker
        return page.versions


class _Snapshot:
    """Index.read(): the backend's read txn as an IndexTxn (a class, not a generator:
    requests take several, and each generator context manager cost a microsecond)."""

    __slots__ = ("_reading",)

    def __init__(self, reading) -> None:
        self._reading = reading

    def __enter__(self) -> IndexTxn:
        return IndexTxn(self._reading.__enter__())

    def __exit__(self, *exc):
        return self._reading.__exit__(*exc)


def open_index(cfg) -> Index:
    """The index the config names: `[index] backend` "lmdb" (gateway.index) or "postgres" (index.dsn)."""
    if cfg.index.backend == "postgres":
        from .pg_backend import PgBackend
        return Index(PgBackend(cfg.index.dsn, pool_size=cfg.index.pool_size))
    from .lmdb_backend import LmdbBackend
    from .volume_index import fill
    index = Index(LmdbBackend(cfg.index_path, max_map_size=cfg.gateway.index_max_size))
    fill(index)   # once, for an index written before the volume index existed (no-op after)
    return index


def upgrade(url: str) -> tuple[int, int, int]:
    """Bring an index up to this Pocket (`pocket index migrate-schema`, `pocket up --postgres`):
    PostgreSQL's schema migrations, then the one-time fill of the volume index, in either
    backend. Returns (schema version before, after, records indexed by the fill)."""
    before = after = 0
    if url.startswith(("postgres://", "postgresql://")):
        from .pg_backend import migrate_schema
        before, after = migrate_schema(url)
    from .volume_index import fill
    index = open_url(url)
    try:
        return before, after, fill(index)
    finally:
        index.close()


def open_url(url: str, **options) -> Index:
    """An index named by a URL: "lmdb:FOLDER" or a "postgres://" / "postgresql://" DSN."""
    if url.startswith(("postgres://", "postgresql://")):
        from .pg_backend import PgBackend
        return Index(PgBackend(url, **options))
    if url.startswith("lmdb:"):
        from .lmdb_backend import LmdbBackend
        return Index(LmdbBackend(url[len("lmdb:"):], **options))
    raise ValueError(f"index {url!r}: name an LMDB folder as lmdb:FOLDER or PostgreSQL as postgresql://...")
