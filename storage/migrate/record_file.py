"""A stored Pocket version as a seekable file that boto3 can send to the source.

boto3 is synchronous and, over plain HTTP, reads a body once to sign its SHA-256 and
again to send it, so it needs `seek`. Bytes come from `ObjectService.read` on the
gateway's event loop (checksum-verified segment by segment) and are handed to the
boto3 thread a chunk at a time: memory stays bounded whatever the size, and seeking
restarts the read at the new offset instead of buffering what was sent.
"""
from __future__ import annotations

import asyncio


class RecordFile:
    def __init__(self, objects, record: dict, loop: asyncio.AbstractEventLoop, first: int = 0,
                 last: int | None = None):
        self.objects, self.record, self.loop = objects, record, loop
        self.first = first
        self.last = record["size"] - 1 if last is None else last
        self.length = self.last - self.first + 1
        self._pos = 0
        self._stream = None
        self._buf = b""

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _open(self) -> None:
        start = self.first + self._pos
        self._stream = self.objects.read(self.record, start, self.last) if start <= self.last else None
        self._buf = b""

    def _drop(self) -> None:
        if self._stream is not None:
            self._call(self._stream.aclose())
        self._stream, self._buf = None, b""

    def read(self, n: int = -1) -> bytes:
        if self._pos >= self.length:
            return b""
        if self._stream is None:
            self._open()
        want = self.length - self._pos if n is None or n < 0 else min(n, self.length - self._pos)
        out = bytearray(self._buf[:want])
        self._buf = self._buf[want:]
        while len(out) < want:
            chunk = self._call(anext(self._stream, b""))
            if not chunk:
                raise IOError(f"{self.record['bucket']}/{self.record['key']} ended after "
                              f"{self._pos + len(out)} of {self.length} bytes")
            take = want - len(out)
            out += chunk[:take]
            self._buf = chunk[take:]
        self._pos += len(out)
        return bytes(out)

    def seek(self, offset: int, whence: int = 0) -> int:
        target = {0: offset, 1: self._pos + offset, 2: self.length + offset}[whence]
        if target != self._pos:
            self._drop()
            self._pos = max(0, min(target, self.length))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def __len__(self) -> int:
        return self.length

    def close(self) -> None:
        self._drop()
