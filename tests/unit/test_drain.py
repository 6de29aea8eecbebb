"""The drain (storage/serving.py) over real sockets: a request whose handler has not
started yet when SIGTERM's drain looks is still finished, and idle keep-alive connections
do not hold the process up."""
import asyncio
import random
import time

from aiohttp import web

from storage import serving

BODY = random.Random("drain-unit").randbytes(300_000)


async def _serve(app: web.Application, shutdown_timeout: float) -> tuple[serving.Listener, int]:
    listener = await serving.listen(app, "127.0.0.1", 0, shutdown_timeout=shutdown_timeout)
    return listener, listener.runner.addresses[0][1]


async def _echo_length(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


def _put_head(port: int) -> bytes:
    return (f"PUT /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(BODY)}\r\n\r\n").encode()


async def _read_status(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    line = await reader.readline()
    if not line:
        return 0, b""
    headers = {}
    while (h := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = h.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(line.split()[1]), await reader.readexactly(int(headers.get("content-length", 0)))


def test_a_request_not_yet_in_its_handler_when_the_drain_starts_is_finished():
    """An outer step that awaits before the handler (authentication reading a body, an
    upload slot) once hid a request from the drain, which then cut its body off and
    waited out the whole shutdown_timeout."""
    async def main():
        entered = asyncio.Event()

        @web.middleware
        async def admission(request, handler):
            entered.set()
            await asyncio.sleep(0.5)
            return await handler(request)
        app = web.Application(middlewares=[admission])
        app.router.add_put("/x", _echo_length)
        listener, port = await _serve(app, shutdown_timeout=10.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_put_head(port) + BODY[:100_000])
        await entered.wait()
        started = time.monotonic()
        drain = asyncio.create_task(serving.drain(listener, lambda: None, 0.0))
        await asyncio.sleep(0.2)
        writer.write(BODY[100_000:])        # the client is still sending after the drain began
        status, body = await asyncio.wait_for(_read_status(reader), 15)
        await asyncio.wait_for(drain, 15)
        writer.close()
        return status, body, time.monotonic() - started
    status, body, seconds = asyncio.run(main())
    assert (status, body) == (200, str(len(BODY)).encode())
    assert seconds < 3, f"the drain took {seconds:.1f}s: it waited out shutdown_timeout"


def test_idle_kept_alive_connections_are_closed_at_once_and_busy_ones_after_their_answer():
    async def main():
        release = asyncio.Event()

        async def held(request):
            await release.wait()
            return await _echo_length(request)
        app = web.Application()
        app.router.add_put("/x", held)
        listener, port = await _serve(app, shutdown_timeout=10.0)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        idle_writer.write(_put_head(port) + BODY)
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
        release.set()
        assert (await _read_status(idle_reader))[0] == 200     # answered, kept alive: now idle
        release.clear()
        busy_writer.write(_put_head(port) + BODY)
        await asyncio.sleep(0.1)
        drain = asyncio.create_task(serving.drain(listener, lambda: None, 0.0))
        idle_eof = await asyncio.wait_for(idle_reader.read(), 5)       # closed without waiting
        assert not drain.done()                                       # the busy one holds it
        release.set()
        status, _ = await asyncio.wait_for(_read_status(busy_reader), 5)
        await asyncio.wait_for(drain, 5)
        for w in (idle_writer, busy_writer):
            w.close()
        return idle_eof, status
    idle_eof, status = asyncio.run(main())
    assert idle_eof == b"" and status == 200


def test_a_stalled_upload_is_cut_off_at_shutdown_timeout():
    """A client that opened an upload and sends nothing more must not hold a stopping
    process past shutdown_timeout: aiohttp's cleanup, given the same timeout again,
    waited it out twice more after the drain had said "cut off"."""
    async def main():
        reading = asyncio.Event()

        async def read_body(request):
            reading.set()
            return await _echo_length(request)
        app = web.Application()
        app.router.add_put("/x", read_body)
        listener, port = await _serve(app, shutdown_timeout=3.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_put_head(port) + BODY[:1000])     # and then nothing
        await asyncio.wait_for(reading.wait(), 10)      # its handler waits for the rest
        started = time.monotonic()
        await asyncio.wait_for(serving.drain(listener, lambda: None, 0.0), 30)
        seconds = time.monotonic() - started
        status, _ = await asyncio.wait_for(_read_status(reader), 5)
        writer.close()
        return seconds, status
    seconds, status = asyncio.run(main())
    # shutdown_timeout for the request, then at most aiohttp's cut-off of a second twice
    assert 3.0 <= seconds < 5.5, f"the drain took {seconds:.1f}s with shutdown_timeout 3s"
    assert status != 200        # nothing was stored from a body that never came
