"""A body's digests fed in order on a worker thread, without a trip through the event loop per segment.

The digests (MD5 for the ETag, and whatever the client declared) must see the body's
bytes in order, so they are one chain per upload: at ~100 ms of CPU per 64 MiB, the
one part of a large PUT that cannot spread over cores. Run as one executor job per
segment, each started when the event loop saw the previous one finish, a 64 MiB PUT at
c1 spent 180-470 ms of its 270-640 ms body phase waiting for that chain (timed inside
the pipeline on a box at load 6-8): every step paid a hop to the loop and back, behind
whatever the loop was doing. Here one job drains whatever segments are queued and stops
when the queue is empty; the next segment starts a new job. The loop only waits
(`below`) when the lane owes too many segments, which also bounds the memory it holds.
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque

from .contracts import Digests


class DigestLane:
    """`feed` segments in body order; `below(n)` waits until fewer than n are owed."""

    def __init__(self, digests: Digests):
        self.digests = digests
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._queue: deque[bytes] = deque()
        self._owed = 0                # segments queued or being hashed
        self._running = False         # a drain job is queued or running
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._wake_below = 0

    def feed(self, segment: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            self._queue.append(segment)
            self._owed += 1
            if self._running:
                return
            self._running = True
        self._loop.run_in_executor(None, self._drain)

    async def below(self, most: int) -> None:
        """Return once fewer than `most` segments are owed; raise what a digest update raised."""
        while True:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if self._owed < most or self._closed:
                    return
                self._waiter, self._wake_below = self._loop.create_future(), most
                waiter = self._waiter
            await waiter

    def close(self) -> None:
        """Drop what is queued (the upload failed); a segment being hashed finishes in its thread."""
        with self._lock:
            self._closed = True
            self._queue.clear()
            waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                segment = self._queue.popleft()
            error = None
            try:
                self.digests.update(segment)
            except BaseException as e:   # handed to the loop by `below`
                error = e
            with self._lock:
                self._owed -= 1
                if error is not None:   # the upload fails: nothing more is hashed
                    self._error, self._closed, self._running = error, True, False
                    self._queue.clear()
                waiter = self._waiter
                if waiter is not None and (error is not None or self._owed < self._wake_below):
                    self._waiter = None
                else:
                    waiter = None
            if waiter is not None:
                try:
                    self._loop.call_soon_threadsafe(_wake, waiter)
                except RuntimeError:   # the loop closed (shutdown): nobody is left waiting
                    pass
            if error is not None:
                return


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
