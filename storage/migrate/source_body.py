"""A large source body (an object or one part's byte range) received in a thread of its own,
over a kept http.client connection (source_http.py), handed to the copy's event loop a
chunk at a time.

Through aiohttp, reading a GiB cost 1.03-1.11 s of CPU: a wake-up of the loop per socket
read, its buffers, then the join of each MiB. Here the thread asks the socket's buffered
reader for a whole chunk, which the kernel writes straight into the one bytes object the
object service cuts a segment from (no join; the GIL is released while receiving), and
the loop is woken once per chunk. At most DEPTH chunks wait for the loop, so memory stays
bounded whatever the object's size, and a source faster than the disks waits.

A connection cut mid-body is not the end of the object: the thread asks again for the
rest (Range from the first byte not received, If-Match the version's ETag, so a changed
object is refused rather than spliced), after standard backoff, up to
source_common.max_attempts() times; only then does the read fail, naming the object.
"""
from __future__ import annotations

import asyncio
import http.client
import threading

from . import source_common

DEPTH = 4                     # chunks received ahead of the copy, per body


class BodyError(IOError):
    """The source's body could not be read whole, even asking again for the rest."""


class ThreadedBody:
    """The body of `response` (bytes first..last of the object), read by a thread; the
    copy reads it with `read` and closes it."""

    def __init__(self, http, url_for, response_of, name: str, first: int, last: int, chunk: int):
        """`url_for(first, last)`: (url, headers) of a ranged GET of the rest; `response_of`:
        (url, connection, response) of the request already answered."""
        self.http, self.url_for, self.name = http, url_for, name
        self.first, self.last, self.chunk = first, last, chunk
        self.left = last - first + 1
        self._url, self._conn, self._response = response_of
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._held = b""
        self._room = threading.Semaphore(DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source-body {name}", daemon=True)
        self._thread.start()

    async def read(self, n: int) -> bytes:
        """The next chunk, or its first `n` bytes (b"" at the end); raises BodyError when the
        source could not deliver the rest. The copy asks for whole chunks: no slicing."""
        if not self.left:
            return b""
        if not self._held:
            got = await self._queue.get()
            if isinstance(got, BaseException):
                raise got
            self._room.release()
            self._held = got
        out, self._held = (self._held, b"") if len(self._held) <= n else (self._held[:n], self._held[n:])
        self.left -= len(out)
        return out

    def close(self) -> None:
        """Stop receiving (the thread closes its connection unless the body was read whole)."""
        self._stop.set()
        self._room.release()        # a thread waiting for room sees the stop

    def _hand(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:        # the loop is closed: nobody reads any more
            self._stop.set()

    def _run(self) -> None:
        at, failures = self.first, 0
        attempts = source_common.max_attempts()
        conn, response, url = self._conn, self._response, self._url
        try:
            while at <= self.last and not self._stop.is_set():
                if response is None:
                    try:
                        url, headers = self.url_for(at, self.last)
                        conn, response = self.http.request("GET", url, headers)
                    except (OSError, http.client.HTTPException) as e:
                        failures += 1
                        if failures >= attempts:
                            raise BodyError(f"{self.name}: the source stopped answering at byte {at} "
                                            f"of {self.first}-{self.last} ({e!r}), {attempts} tries") from None
                        source_common.backoff(failures)
                        continue
                    if response.status != 206 or response.length != self.last - at + 1:
                        response.close()
                        raise BodyError(f"{self.name}: asked again for bytes {at}-{self.last}, the source "
                                        f"answered {response.status} {response.reason} "
                                        f"({response.length} bytes)")
                self._room.acquire()
                if self._stop.is_set():
                    break
                try:
                    data = response.read(min(self.chunk, self.last - at + 1))
                except (OSError, http.client.HTTPException):
                    data = None
                if data:
                    at += len(data)
                    self._hand(data)
                else:
                    self._room.release()
                if at <= self.last and (not data or response.isclosed()):
                    # cut (or ended early): the rest is asked for again
                    conn.close()
                    conn = response = None
                    failures += 1
                    if failures >= attempts:
                        raise BodyError(f"{self.name}: the connection broke at byte {at} of "
                                        f"{self.first}-{self.last}, {attempts} tries")
                    source_common.backoff(failures)
        except BodyError as e:
            self._hand(e)
        except Exception as e:      # anything else still ends the read, never leaves it waiting
            self._hand(BodyError(f"{self.name}: {e!r}"))
        finally:
            if conn is not None:
                self.http.done(url, conn, response, at > self.last)
