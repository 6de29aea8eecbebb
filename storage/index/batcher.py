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
import collections
import threading
from typing import Any, Callable, TypeVar

from ..handback import hand_back
from .backend import Conflicted, RestartTxn
from .index import Index
from .ops import IndexTxn

T = TypeVar("T")


class IndexWriter:
    """Batching writer over an ``Index``.

    The writer thread takes the next batch itself as soon as a commit ends, as the pack
    writers do (node/packs.py). It used to be fed from the event loop, one batch per trip:
    the loop had to run to see a commit end before it handed over the next batch, so the
    index sat idle between commits and every write waited that trip too (a small PUT at
    16 clients: 2.3-3.8 ms per batch between a commit's end and its callers hearing of it,
    on commits of 5-7 ms; stage timestamps under load)."""

    def __init__(self, index: Index, max_batch: int = 1000, idle_seconds: float = 5.0):
        self.index = index
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds   # an idle writer thread ends; the next write starts one
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[Callable[[IndexTxn], Any], asyncio.Future]] = collections.deque()
        self._staged: list[tuple[Callable[[IndexTxn], Any], asyncio.Future]] = []  # this loop iteration's
        self._handing_over: set = set()        # loops with a _hand_over scheduled (under _cond)
        self._thread: threading.Thread | None = None
        self._in_flight = 0                    # fns of the batch the thread is committing
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
        with self._cond:
            self._staged.append((fn, fut))
            if loop not in self._handing_over:
                # handed over after the current tasks yield, so callers that are already
                # runnable (e.g. a gather) join one batch, for one wake-up of the thread
                self._handing_over.add(loop)
                loop.call_soon(self._hand_over, loop)
        return await fut

    def _hand_over(self, loop) -> None:
        with self._cond:
            self._handing_over.discard(loop)
            if self._staged:
                self._queue.extend(self._staged)
                self._staged = []
                self._wake()

    def _wake(self) -> None:
        """Start the thread or wake it for what is queued (caller holds _cond)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
            self._thread.start()
        else:
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._closed or (not self._cond.wait(self.idle_seconds) and not self._queue):
                        self._thread = None
                        return
                n = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(n)]
                self._in_flight = n
            try:
                outcomes = self._run_batch([fn for fn, _ in batch])
            except BaseException as exc:  # commit failed: the whole batch fails
                outcomes = [(False, exc)] * len(batch)
            else:
                self.commits += 1
                self.calls += len(batch)
            with self._cond:
                self._in_flight = 0
            _resolve(batch, outcomes)

    def waiting(self) -> int:
        """Writes submitted and not yet committed."""
        with self._cond:
            return len(self._staged) + len(self._queue) + self._in_flight

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
        with self._cond:
            self._closed = True
            self._queue.extend(self._staged)   # submitted but not handed over yet: written too
            self._staged = []
            if self._queue or self._thread is not None:
                self._wake()
            thread = self._thread
        if thread is not None:
            # the thread's last hand-backs are queued on the loop before this join's own
            await asyncio.get_running_loop().run_in_executor(None, thread.join)


def _resolve(batch: list, outcomes: list[tuple[bool, Any]]) -> None:
    hand_back([(fut, None if ok else value, value if ok else None) for (_, fut), (ok, value) in zip(batch, outcomes)])
