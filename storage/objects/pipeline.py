"""A PUT body's CPU work running beside its disk work, for a bounded number of segments.

Profiled on a 64 MiB PUT (bench/pipeline.py), the upload ran one step at a time: read a
segment, hash it (MD5, plus whatever the client declared), encode it, pack its records
(a keyed checksum per block), queue them, read the next. The disks waited while the
event loop hashed, the hashing waited while the loop read the body, and only one core
was ever busy. Here each segment goes through two kinds of work in executor threads
(hashlib and zfec release the GIL on large buffers, so threads run on separate cores):

- the body digests, which must see the bytes in order: one lane (digest_lane.py) that
  a worker drains segment after segment without a trip through the loop between them;
- sealing (encryption), encoding and packing, which are per segment and run side by
  side for up to `depth` segments.

Records go to the archive writer in segment order as soon as they are ready, while the
event loop reads the next segments of the body. Memory stays at `depth` segments (and
their records) plus the archive queues, whatever the object size.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from ..codec import Codec
from .contracts import Digests
from .digest_lane import DigestLane
from .put import ArchiveWriter, Record, pack_records

DEPTH = 3                 # segments whose encoding may be in flight at once
_INLINE_BYTES = 64 << 10  # below this, hashing and encoding on the loop beats a thread hop


class EncodePipeline:
    """Feed segments in order with `put`; `finish` when the body ends; `close` on any failure."""

    def __init__(self, writer: ArchiveWriter, codec: Codec, digests: Digests,
                 seal: Callable[[int, bytes], bytes] | None = None, depth: int = DEPTH):
        self.writer, self.codec, self.digests, self.seal = writer, codec, digests, seal
        self.depth = max(1, depth)
        self._lane: DigestLane | None = None              # the digests, fed in order off the loop
        self._encoding: deque[asyncio.Future] = deque()  # records of segments not yet queued, in order
        self._count = 0

    async def put(self, segment: bytes) -> None:
        """Take the next segment; returns once at most `depth` segments are being worked on."""
        n, self._count = self._count, self._count + 1
        if len(segment) <= _INLINE_BYTES and not self._encoding:
            await self._hashes_below(1)
            self.digests.update(segment)
            await self.writer.write_records(self._records(n, segment, self.writer.wanted()))
            return
        if self._lane is None:
            self._lane = DigestLane(self.digests)
        self._lane.feed(segment)
        self._encoding.append(asyncio.get_running_loop().run_in_executor(
            None, self._records, n, segment, self.writer.wanted()))
        while len(self._encoding) >= self.depth:
            await self._write_oldest()
        # The digest lane is one thread where encoding is several, so under load it falls
        # behind; each segment it owes is held. Without this wait a fast client
        # filled memory with a quarter of the body (a 1 GiB PUT held ~300 MiB).
        await self._hashes_below(self.depth)

    async def finish(self) -> None:
        """Queue every segment's records and wait until the digests have seen every byte."""
        while self._encoding:
            await self._write_oldest()
        await self._hashes_below(1)

    def close(self) -> None:
        """Drop the work in flight (the upload failed; the writer aborts its archives)."""
        for fut in self._encoding:
            fut.cancel()
            fut.add_done_callback(_quiet)
        self._encoding.clear()
        if self._lane is not None:
            self._lane.close()

    async def _hashes_below(self, most: int) -> None:
        """Wait until the digests owe fewer than `most` segments."""
        if self._lane is not None:
            await self._lane.below(most)

    async def _write_oldest(self) -> None:
        await self.writer.write_records(await self._encoding.popleft())

    def _records(self, n: int, segment: bytes, wanted: frozenset[int]) -> list[Record | None]:
        stored = self.seal(n, segment) if self.seal else segment
        return pack_records(self.codec.encode(stored), wanted)


def _quiet(fut: asyncio.Future) -> None:
    """Retrieve a dropped future's outcome so asyncio does not log it as never retrieved."""
    if not fut.cancelled():
        fut.exception()
