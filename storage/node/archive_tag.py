"""The node link's tag for an archive upload covers the archive's skeleton; the record
checksums cover the rest.

An archive is header | record head | payload | ... | trailer | footer (layout.py), and
every payload's head carries a checksum keyed with the cluster secret, which no one
without the secret can compute. Tagging the payloads as well hashed every fragment byte
once more on each end of the link: ~11 ms of CPU per 16 MiB archive on each end, ~65 ms
of the gateway's per 64 MiB PUT to `pocket up --nodes 6` (six archives; process_time
around the former auth.signed_body/verified_body), while the node never checked the
record checksums of what it then acknowledged (the store checks header and trailer only).

So the tag is HMAC(key, request MAC || skeleton), the skeleton being every byte that is
not a record payload, in order: the header, each record head (length and checksum) and
the tail (trailer and footer). The node checks each payload against its head's checksum
as it streams in, a batch behind the stream in executor threads (~12 ms per 16 MiB), and
the store commits nothing unless the tag and every checksum match:

- a payload byte changed on the way fails its record's checksum;
- a header, head or tail byte changed (another checksum, swapped records, another
  manifest) fails the tag;
- both ends cut the stream with the same `Splitter`, whose cuts depend only on skeleton
  bytes, so bytes added or cut off fail the tag, or end the stream inside a record.

A body whose tag matches but whose records do not had its payloads damaged on the way or
before it was sent (a disk move copying a rotten archive): either way it is refused as a
corrupt fragment (422), which makes a mover rebuild the archive instead. A tag that does
not match means header, heads or trailer were changed: a forged body (403).

Where a payload ends is read from its head: a record as long as the header's block size
is followed by another record or by the tail, a shorter one is the last, and anything
else (the trailer's JSON read as a head) begins the tail. A stream that does not start
with a valid current-format header is all tail: tagged whole, then refused by the store.
"""
from __future__ import annotations

import asyncio
import hmac
from typing import AsyncIterable, AsyncIterator

from .. import layout
from .auth import AUTH_HEADER, TAG_SIZE, BadBody, archive_tagger

_HEADER, _HEAD, _PAYLOAD, _TAIL = range(4)


class Splitter:
    """Cuts an archive stream, however it is chunked, into skeleton bytes (fed to `tag`)
    and record payloads; with `keep`, each whole payload is queued in `finished` as
    (segment, checksum from its head, pieces, length, archive format), pieces being views
    of the chunks."""

    def __init__(self, tag, keep: bool):
        self.tag, self.keep = tag, keep
        self.finished: list[tuple[int, int, list, int, int]] = []
        self._part, self._need, self._buf = _HEADER, layout.HEADER_SIZE, bytearray()
        self._block = self._segment = self._want = self._length = 0
        self._fmt = layout.FORMAT_VERSION
        self._pieces: list = []
        self._last = False

    def feed(self, chunk) -> None:
        view = memoryview(chunk).cast("B")     # lengths in bytes, whatever buffer the codec made
        while view:
            if self._part == _TAIL:
                self.tag.update(view)
                return
            n = min(self._need, len(view))
            piece, view = view[:n], view[n:]
            self._need -= n
            if self._part == _PAYLOAD:
                if self.keep:
                    self._pieces.append(piece)
                if not self._need:
                    self._record_done()
                continue
            self.tag.update(piece)
            self._buf += piece
            if not self._need:
                self._parsed(bytes(self._buf))
                self._buf.clear()

    def _parsed(self, raw: bytes) -> None:
        if self._part == _HEADER:
            try:
                header = layout.ArchiveHeader.unpack(raw, layout.STRICT)
                self._block, self._fmt = header.block_size, header.fmt
            except layout.CorruptFragment:
                self._part = _TAIL
                return
        else:
            length, self._want = layout.unpack_record_head(raw)
            if 0 < length <= self._block:
                self._part, self._need, self._length = _PAYLOAD, length, length
                self._last = length < self._block
                return
            self._part = _TAIL
            return
        self._part, self._need = _HEAD, layout.RECORD_OVERHEAD

    def _record_done(self) -> None:
        if self.keep:
            self.finished.append((self._segment, self._want, self._pieces, self._length, self._fmt))
            self._pieces = []
        self._segment += 1
        self._part, self._need = (_TAIL, 0) if self._last else (_HEAD, layout.RECORD_OVERHEAD)

    def take(self) -> list[tuple[int, int, list, int, int]]:
        done, self.finished = self.finished, []
        return done

    def problem_at_end(self) -> str | None:
        """Why the stream cannot be a whole archive, judged by where it ended (None: it may be)."""
        if self._part == _PAYLOAD:
            return f"the body ends inside the record of segment {self._segment}"
        if self._part == _HEADER:
            return "the body ends inside the archive header"
        return None


async def signed_archive(secret: str, headers: dict[str, str], chunks: AsyncIterable) -> AsyncIterator:
    """The archive followed by its tag (the sending side). Only skeleton bytes are hashed,
    a few KiB per archive, so on the event loop."""
    split = Splitter(archive_tagger(secret, headers[AUTH_HEADER]), keep=False)
    async for chunk in chunks:
        split.feed(chunk)
        yield chunk
    yield split.tag.digest()


async def verified_archive(secret: str, headers, chunks: AsyncIterable[bytes]) -> AsyncIterator:
    """The archive without its tag (the receiving side). The last TAG_SIZE bytes are held
    back until the end; instead of the end of the stream, BadBody is raised when the tag
    does not match and CorruptFragment when a record does not, so the store never commits
    either. Large chunks pass through as views, not copies."""
    split = Splitter(archive_tagger(secret, headers.get(AUTH_HEADER, "")), keep=True)
    checks = _Checks()
    held = b""
    try:
        async for chunk in chunks:
            if len(chunk) >= TAG_SIZE:
                view = memoryview(chunk)
                pieces, held = (held, view[:-TAG_SIZE]), bytes(view[-TAG_SIZE:])
            else:
                data = held + chunk
                pieces, held = (data[:-TAG_SIZE],), data[-TAG_SIZE:]
            for piece in pieces:
                if piece:
                    split.feed(piece)
                    await checks.add(split.take())
                    yield piece
        if len(held) != TAG_SIZE or not hmac.compare_digest(split.tag.digest(), held):
            raise BadBody("body tag missing or wrong: the archive's header, record heads or trailer "
                          "are not the ones this request was signed with")
        problem = split.problem_at_end() or await checks.result()
        if problem:
            raise layout.CorruptFragment(problem)
    finally:
        checks.drop()


def records_problem(archive) -> str | None:
    """Why a whole archive's records do not match their heads' checksums (None: they do).
    For an archive that came in a batch (batch.py), whose tag covers every byte: the
    records are checked all the same, since a mover copies archives as they are on the
    old disk, rot and all."""
    split = Splitter(_Untagged(), keep=True)
    split.feed(archive)
    return split.problem_at_end() or _first_bad(split.take())


class _Untagged:
    def update(self, _data) -> None:
        pass


class _Checks:
    """Checks whole payloads against their heads' checksums in executor threads, one
    batch of BATCH_BYTES behind the stream: nothing is committed before the end of the
    body, so the checks may lag, and a thread hop per record would cost more than a
    small record's check."""

    BATCH_BYTES = 1 << 20
    INLINE_BYTES = 64 << 10

    def __init__(self):
        self._batch: list = []
        self._size = 0
        self._running: asyncio.Future | None = None
        self._problem: str | None = None

    async def add(self, records: list) -> None:
        if not records:
            return
        self._batch += records
        self._size += sum(r[3] for r in records)
        if self._size >= self.BATCH_BYTES:
            batch, self._batch, self._size = self._batch, [], 0
            await self._settle()
            self._running = asyncio.get_running_loop().run_in_executor(None, _first_bad, batch)

    async def _settle(self) -> None:
        if self._running is not None:
            running, self._running = self._running, None
            self._problem = self._problem or await running

    async def result(self) -> str | None:
        """The first record that failed its check (None: all passed), once all are checked."""
        await self._settle()
        batch, size, self._batch, self._size = self._batch, self._size, [], 0
        if size > self.INLINE_BYTES:
            problem = await asyncio.get_running_loop().run_in_executor(None, _first_bad, batch)
        else:   # a small archive's records: the thread hop would cost more than the check
            problem = _first_bad(batch)
        self._problem = self._problem or problem
        return self._problem

    def drop(self) -> None:
        """The body ended early: retrieve the batch in flight's outcome, whatever it is."""
        if self._running is not None:
            self._running.add_done_callback(lambda f: f.cancelled() or f.exception())


def _first_bad(records: list) -> str | None:
    for segment, want, pieces, _length, fmt in records:
        if not layout.payload_matches(pieces, want, fmt):
            return (f"segment {segment}: record checksum mismatch (the payload was changed on the way, "
                    "or sent damaged)")
    return None
