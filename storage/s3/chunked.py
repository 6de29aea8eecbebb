"""The aws-chunked body encoding, decoded as it streams in.

S3 clients that cannot (or will not) hash a body before sending it wrap it in
`Content-Encoding: aws-chunked`:

    <hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n      one per chunk
    0[;chunk-signature=<sig>]\\r\\n                          the last, empty chunk
    [name:value\\r\\n ...]                                  trailers (the *-TRAILER modes)
    \\r\\n

In the signed modes every chunk's signature chains from the previous one, starting
at the request's own (seed) signature, and the trailer block is signed after the
empty chunk. The decoder yields the data as it arrives, never holding more than one
network read, and checks each chunk's signature when its last byte has passed. Data
of a chunk that later fails its check has already gone to the encoder, which is why
an error raised here must abort the upload: the object service does exactly that
for any exception from the body, so nothing of a forged body is ever committed.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import AsyncIterable, AsyncIterator, Callable

from . import errors, sigv4

_HEADER_LIMIT = 4096        # one chunk header line; real ones are < 100 bytes
_TRAILER_LIMIT = 16 << 10   # the whole trailer block
_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIG = re.compile(r"[0-9a-f]{64}")
TRAILER_SIGNATURE = "x-amz-trailer-signature"


class ChunkedDecoder:
    """Async iterator of the decoded bytes of one aws-chunked body.

    `auth` (the request's AuthResult) turns on chunk signature checks; `trailers`
    allows a trailer block, whose signature is checked too when `auth` is given.
    Each trailer but the signature is handed to `on_trailer(name, value)` before
    the iteration ends, so a checksum it carries is known before the upload is
    judged complete.
    """

    def __init__(self, source: AsyncIterable[bytes], auth: sigv4.AuthResult | None = None,
                 trailers: bool = False, on_trailer: Callable[[str, str], None] | None = None):
        self._source = source.__aiter__()
        self._buf = b""
        self._pos = 0
        self._auth = auth
        self._trailers_allowed = trailers
        self._on_trailer = on_trailer
        self.previous_signature = auth.seed_signature if auth else ""
        self.trailers: list[tuple[str, str]] = []
        self.decoded = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._decode()

    async def _decode(self) -> AsyncIterator[bytes]:
        while True:
            size, signature = self._parse_header(await self._line(_HEADER_LIMIT))
            digest = hashlib.sha256() if self._auth else None
            left = size
            while left:
                piece = await self._take(left)
                left -= len(piece)
                if digest:
                    digest.update(piece)
                self.decoded += len(piece)
                yield piece
            if size:
                if await self._line(_HEADER_LIMIT) != b"":
                    raise _malformed(f"chunk data of {size} bytes is not followed by CRLF")
            if digest:
                self._check_chunk(signature, digest.hexdigest())
            if size == 0:
                break
        await self._read_trailers()
        await self._expect_end()

    # framing ------------------------------------------------------------------------------
    def _parse_header(self, line: bytes | None) -> tuple[int, str]:
        if line is None:
            raise errors.IncompleteBody("The aws-chunked body ended before its final zero-length chunk.")
        size_part, _, extensions = line.partition(b";")
        size_part = size_part.strip()
        if not _SIZE.fullmatch(size_part):
            raise _malformed(f"bad chunk size {size_part[:32]!r}")
        signature = ""
        if self._auth:
            name, _, value = extensions.decode("latin-1").partition("=")
            if name.strip() != "chunk-signature" or not _SIG.fullmatch(value.strip()):
                raise errors.SignatureDoesNotMatch(
                    "A signed aws-chunked upload needs a chunk-signature on every chunk.")
            signature = value.strip()
        return int(size_part, 16), signature

    def _check_chunk(self, signature: str, sha256_hex: str) -> None:
        expected = sigv4.verify_chunk_signature(self._auth, self.previous_signature, sha256_hex)
        if not hmac.compare_digest(expected, signature):
            raise errors.SignatureDoesNotMatch(
                "The chunk signature we calculated does not match the signature you provided.",
                SignatureProvided=signature)
        self.previous_signature = expected

    async def _read_trailers(self) -> None:
        total = 0
        signature = None
        while True:
            line = await self._line(_TRAILER_LIMIT)
            if line is None or line == b"":
                break  # a blank line ends the block; EOF right after the last trailer is tolerated
            total += len(line)
            if total > _TRAILER_LIMIT:
                raise errors.MalformedTrailerError("The trailer block is too long.")
            if not self._trailers_allowed:
                raise _malformed("trailing headers sent without a *-TRAILER x-amz-content-sha256")
            name, colon, value = line.decode("utf-8", "surrogateescape").partition(":")
            name, value = name.strip().lower(), value.strip()
            if not colon or not name:
                raise errors.MalformedTrailerError(f"Trailer line {line[:64]!r} is not 'name:value'.")
            if name == TRAILER_SIGNATURE:
                signature = value
            else:
                self.trailers.append((name, value))
        if self._auth and self._trailers_allowed:
            expected = sigv4.expected_trailer_signature(self._auth, self.previous_signature, self.trailers)
            if signature is None or not hmac.compare_digest(expected, signature):
                raise errors.SignatureDoesNotMatch(
                    "The trailer signature we calculated does not match the signature you provided.",
                    SignatureProvided=signature or "")
        if self._on_trailer:
            for name, value in self.trailers:
                self._on_trailer(name, value)

    async def _expect_end(self) -> None:
        while True:
            if self._pos < len(self._buf):
                raise _malformed("data after the end of the aws-chunked body")
            if not await self._fill():
                return

    # buffered reading ---------------------------------------------------------------------
    async def _fill(self) -> bool:
        while True:
            data = await anext(self._source, None)
            if data is None:
                return False
            if data:
                rest = self._buf[self._pos:]
                self._buf, self._pos = (rest + bytes(data)) if rest else bytes(data), 0
                return True

    async def _line(self, limit: int) -> bytes | None:
        """The next line without its CRLF (a bare LF is tolerated); None at a clean end."""
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                line = self._buf[self._pos:end]
                self._pos = end + 1
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) - self._pos > limit:
                raise _malformed("a chunk header or trailer line is too long")
            if not await self._fill():
                if self._pos < len(self._buf):
                    raise errors.IncompleteBody("The aws-chunked body ended in the middle of a line.")
                return None

    async def _take(self, most: int) -> bytes:
        if self._pos >= len(self._buf) and not await self._fill():
            raise errors.IncompleteBody("The aws-chunked body ended in the middle of a chunk.")
        end = min(len(self._buf), self._pos + most)
        piece = self._buf[self._pos:end] if (self._pos, end) != (0, len(self._buf)) else self._buf
        self._pos = end
        return piece


def _malformed(why: str) -> errors.S3Error:
    return errors.InvalidRequest(f"The aws-chunked body is malformed: {why}.")
