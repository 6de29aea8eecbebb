"""An HTTP relay in front of a real S3 source that counts what crosses it: how many large
bodies stream at once (the peak), and which requests came signed by presigned URL.

A large body (over `large` bytes) is relayed at a bounded pace, so bodies that the client
reads at the same time overlap in the relay for long enough to be counted, on a loaded
machine too. Requests and headers are passed on as they came (Host included: SigV4 signs
it), so the source still checks every signature itself. With `cut`, the first GET of
each large body (each object, each part's range) is cut off (its connection closed) after
that many bytes, as a network drops one mid-transfer; the Range of every GET is kept, to
see what was asked again.
"""
from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager

import aiohttp
from aiohttp import web
from yarl import URL

from .harness import free_ports

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class SourceMeter:
    def __init__(self, target: str, large: int = 1 << 20, pace: float = 0.02, cut: int = 0):
        """`target`: the source's endpoint; a large body goes on in 64 KiB pieces,
        `pace` seconds apart."""
        self.target, self.large, self.pace, self.cut = target.rstrip("/"), large, pace, cut
        self.ranges: list[tuple[str, str | None]] = []       # (path, Range) of every GET
        self._cut: set[tuple[str, str | None]] = set()      # (path, Range) of the GETs cut
        self.port = free_ports(1)[0]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.streaming = self.peak = 0
        self.requests: list[tuple[str, str, bool]] = []      # (method, query, presigned)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("User-Agent",
                                                                                        "Accept-Encoding"))
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        query = request.raw_path.partition("?")[2]
        self.requests.append((request.method, query, "X-Amz-Signature=" in query))
        if request.method == "GET":
            self.ranges.append((request.path, request.headers.get("Range")))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        async with self._session.request(request.method, URL(self.target + request.raw_path, encoded=True),
                                         headers=headers,
                                         data=body or None, allow_redirects=False) as up:
            out = web.StreamResponse(status=up.status, headers={k: v for k, v in up.headers.items()
                                                                if k.lower() not in _HOP})
            if up.content_length is not None:
                out.content_length = up.content_length
            await out.prepare(request)
            large = request.method == "GET" and (up.content_length or 0) > self.large
            if large:
                self.streaming += 1
                self.peak = max(self.peak, self.streaming)
            left = up.content_length or 0
            asked = (request.path, request.headers.get("Range"))
            cut_after = self.cut if large and self.cut and asked not in self._cut else 0
            try:
                while chunk := await up.content.read(1 << 16):
                    if cut_after:
                        if len(chunk) >= cut_after:
                            self._cut.add(asked)
                            await out.write(chunk[:cut_after])
                            request.transport.close()
                            return out
                        cut_after -= len(chunk)
                    if large:
                        await asyncio.sleep(self.pace)
                        left -= len(chunk)
                        if not left:        # done before the client can have its last byte (and
                            large = False   # start its next body): counted as the client holds it
                            self.streaming -= 1
                    await out.write(chunk)
            finally:
                if large:
                    self.streaming -= 1
            await out.write_eof()
            return out

    def close(self) -> None:
        async def stop():
            await self._runner.cleanup()
            await self._session.close()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def meter_in_front(source, **kw):
    """A SourceMeter in front of `source` (started by the caller); both stopped at the end."""
    try:
        meter = SourceMeter(source.endpoint, **kw)
    except BaseException:
        source.close()
        raise
    try:
        yield meter
    finally:
        meter.close()
        source.close()
