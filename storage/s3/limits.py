"""What one client may hold of the gateway: an upload slot, and time to send its body.

Without these, 50 connections trickling a byte at a time held the gateway's memory and
file descriptors forever (Slowloris). Headers are bounded by aiohttp's keep-alive
timer, which also runs from a connection's opening until its request's headers are
complete (`gateway.header_timeout`, set in app.py). A body must keep moving: no gap
longer than `gateway.body_timeout`, and on average at least `gateway.body_min_rate`
bytes/s after that grace (Apache's mod_reqtimeout `body=T,MinRate=R`), else the
request ends with RequestTimeout and the connection is closed. Uploads at once are
capped by `gateway.max_uploads`; one more gets `503 SlowDown`, which every SDK retries
with backoff, instead of queueing where it would hold a connection and memory.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager

from . import errors


class UploadSlots:
    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    @contextmanager
    def claim(self):
        if self.used >= self.limit:
            raise errors.SlowDown(f"{self.used} uploads are in progress, the most this gateway takes at once "
                                  "(gateway.max_uploads); retry shortly.")
        self.used += 1
        try:
            yield
        finally:
            self.used -= 1


class BodyPace:
    """The deadline of a request body's next bytes: `timeout` after the last ones, and no
    later than `timeout` + (bytes so far / min_rate) after the body started."""

    def __init__(self, timeout: float, min_rate: float):
        self.timeout, self.min_rate = timeout, min_rate
        self.started, self.received = time.monotonic(), 0

    def budget(self) -> float:
        overall = self.timeout + (self.received / self.min_rate if self.min_rate else float("inf"))
        return max(0.0, min(self.timeout, self.started + overall - time.monotonic()))

    async def read(self, content, size: int) -> bytes:
        try:
            async with asyncio.timeout(self.budget()):
                chunk = await content.read(size)
        except TimeoutError:
            raise errors.RequestTimeout(
                f"The request body stopped or slowed below {self.min_rate:g} bytes/s after {self.received} "
                f"bytes; the connection is closed (gateway.body_timeout {self.timeout:g} s).") from None
        self.received += len(chunk)
        return chunk
