"""Group commit of index writes for asyncio callers.

Why: every durable commit is an fsync (LMDB's data file, PostgreSQL's WAL), which caps
one-object-per-commit PUTs near ~1,000/s.  ``IndexWriter`` runs all writes that arrive
while a commit is in flight in ONE write transaction on a single dedicated
thread (LMDB allows one writer anyway), so one fsync covers many objects.

Semantics:

* ``await submit(fn)`` returns ``fn(ops)``'s result once the transaction that
  contained it is durably committed (or raises fn's own exception).
* Each fn runs in a savepoint (a child transaction): if it raises, only its
  own changes are rolled back and only its own caller sees the exception;
  the other fns of the batch still commit.  If the outer commit itself fails,
  every caller of that batch gets that error.
* A batch the backend could not commit for conflicts with other writers (``Conflicted``:
  another gateway on the same PostgreSQL kept winning) is split in halves, each
  committed alone, down to single fns: one write that conflicts fails only its own
  caller, never the batch it arrived with.
* fns run in the writer thread, in submission order; they may be re-run if the
  transaction must restart (LMDB's map grows, PostgreSQL reports a serialization
  conflict with another gateway), so they must be pure functions of ``ops``.
* No write txn is ever held across an await: the event loop only hands a
  list of fns to the thread and awaits the outcome.
* Cancelling a waiting caller does not un-submit its fn: the write may still
  be applied (as with any cancelled RPC).
* Reads are synchronous and go straight to the ``Index``.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from .backend import Conflicted, RestartTxn
from .index import Index
from .ops import IndexTxn

T = TypeVar("T")


class IndexWriter:
    """Batching writer over an ``Index``; bound to one event loop at a time."""

    def __init__(self, index: Index, max_batch: int = 1000):
        self.index = index
        self.max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-writer")
        self._pending: list[tuple[Callable[[IndexTxn], Any], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._closed = False
        self.commits = 0  # batches committed by this writer
        self.calls = 0  # fns executed (committed or individually failed)
        self.splits = 0  # batches split in halves because they kept conflicting

    async def submit(self, fn: Callable[[IndexTxn], T]) -> T:
        """Run ``fn(ops)`` in the next group-committed write txn."""
        if self._closed:
            raise RuntimeError("IndexWriter is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((fn, fut))
        if self._flusher is None or self._flusher.done():
            # The flusher starts after the current tasks yield, so callers that
            # are already runnable (e.g. a gather) join the first batch too.
            self._flusher = loop.create_task(self._flush_loop())
        return await fut

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            fns = [fn for fn, _ in batch]
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run_batch, fns)
            except asyncio.CancelledError:
                # Loop shutting down; the thread may still commit this batch.
                for _, fut in batch + self._pending:
                    fut.cancel()
                self._pending.clear()
                raise
            except Exception as exc:  # commit failed: the whole batch fails
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.commits += 1
            self.calls += len(batch)
            for (_, fut), (ok, value) in zip(batch, outcomes):
                if fut.done():  # caller was cancelled
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    def _run_batch(self, fns: list[Callable[[IndexTxn], Any]]) -> list[tuple[bool, Any]]:
        """Worker thread: one write txn, one savepoint per fn; halves if it keeps conflicting."""
        def body(ops: IndexTxn) -> list[tuple[bool, Any]]:
            out: list[tuple[bool, Any]] = []
            for fn in fns:
                try:
                    with ops.txn.savepoint() as child:
                        out.append((True, fn(IndexTxn(child))))
                except RestartTxn:
                    raise  # let the backend re-run the whole batch
                except Exception as exc:
                    out.append((False, exc))
            return out

        try:
            return self.index.write(body)
        except Conflicted as exc:
            if len(fns) == 1:
                return [(False, exc)]
            self.splits += 1
            half = len(fns) // 2
            return self._run_batch(fns[:half]) + self._run_batch(fns[half:])

    # ---- convenience wrappers ------------------------------------------
    async def put_object(self, bucket: str, key: str, record: dict) -> dict | None:
        return await self.submit(lambda t: t.put_object(bucket, key, record))

    async def delete_object(self, bucket: str, key: str) -> dict | None:
        return await self.submit(lambda t: t.delete_object(bucket, key))

    async def create_bucket(self, name: str, record: dict | None = None) -> bool:
        return await self.submit(lambda t: t.create_bucket(name, record))

    async def delete_bucket(self, name: str) -> bool:
        return await self.submit(lambda t: t.delete_bucket(name))

    async def put_bucket(self, name: str, record: dict) -> dict | None:
        return await self.submit(lambda t: t.put_bucket(name, record))

    async def aclose(self) -> None:
        """Drain pending writes, then stop the writer thread (Index stays open)."""
        self._closed = True
        while self._flusher is not None and not self._flusher.done():
            await self._flusher
        self._executor.shutdown(wait=True)
