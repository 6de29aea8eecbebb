"""One ranged request per fragment archive for a whole read, instead of one per window.

A request over the node API costs ~0.3 ms of CPU on each side whatever its size (auth,
routing, headers, a thread hop on the node), and the reader (get.py) reads in windows of
a few MiB: a 64 MiB GET of ec:4+2 made 64 of them. A disk that can stream a range
(`RemoteDisk.stream_range`) is asked once per fragment, for every record up to the end of
the read, and each window takes its records from that response in turn; TCP's flow
control keeps the node from reading far ahead. A local disk is read window by window
as before: a read there costs no request.

Windows are read one ahead (get.py), so two may want the same fragment at once; a lock
per fragment lets the earlier one, which asks first, take its part first. A window that
does not find the stream where it starts (out of turn, or a fragment taken up again
after it was dropped) reads its own range as before: slower, never wrong.
"""
from __future__ import annotations

import asyncio


class FragmentStreams:
    def __init__(self) -> None:
        self._open: dict[int, object] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def read(self, i: int, disk, name: str, offset: int, length: int, end: int) -> bytes:
        """Bytes offset..offset+length of fragment `i`'s archive `name` on `disk`, from
        the stream of everything up to `end` when that saves requests."""
        lock = self._locks.setdefault(i, asyncio.Lock())
        async with lock:
            stream = self._open.get(i)
            if stream is not None and stream.position > offset:   # a window out of turn
                return await disk.read(name, offset, length)
            if stream is not None and stream.position < offset:   # behind: this fragment was skipped
                self._drop(i)
                stream = None
            if stream is None:
                if end - offset <= length or not hasattr(disk, "stream_range"):
                    return await disk.read(name, offset, length)
                stream = self._open[i] = await disk.stream_range(name, offset, end - offset)
            try:
                data = await stream.take(length)
            except BaseException:
                self._drop(i)
                raise
            if stream.done:
                self._drop(i)
            return data

    def _drop(self, i: int) -> None:
        stream = self._open.pop(i, None)
        if stream is not None:
            stream.close()

    def close(self) -> None:
        """Close what the read left open (it ended early, or a fragment went unused)."""
        for i in list(self._open):
            self._drop(i)
