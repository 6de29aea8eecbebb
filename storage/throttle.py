"""A token bucket: the one rate limiter of background work (scrub reads, repair writes).

Background work must not starve client traffic, so it pays for its bytes before (or
as) it moves them. The bucket starts empty and keeps at most `burst` seconds of unused
rate, so a limiter that sat idle for an hour does not then let an hour's worth through
at full speed, and N bytes through a fresh bucket take at least N / rate seconds.
Coroutines sharing one bucket share its rate: each `take` queues behind the debt of the
ones before it. `rate` may be changed at any time (a one-off pass at another rate).
"""
from __future__ import annotations

import asyncio
import time


class Throttle:
    def __init__(self, rate: float, burst: float = 1.0):
        self.rate = rate           # bytes per second; 0: unlimited
        self.burst = burst         # seconds of unused rate that may be saved up
        self.bytes = 0             # taken so far (progress and metrics)
        self._tokens = 0.0
        self._stamp = time.monotonic()

    async def take(self, n: int) -> None:
        """Account `n` bytes; sleep until the rate allows them."""
        self.bytes += n
        if self.rate <= 0:
            return
        now = time.monotonic()
        self._tokens = min(self.rate * self.burst, self._tokens + (now - self._stamp) * self.rate) - n
        self._stamp = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)
