"""The copy's side of the gateway copy route (storage/migrate/gateway_copy.py) against a
gateway that answers differently from the current one: a release that speaks another
version of the route, or one that cannot store a version of a batch. Whatever it answers,
every version ends up either stored by the gateway or handed back to be written here."""
from __future__ import annotations

import asyncio

from aiohttp import web

from storage.migrate import gateway_copy
from storage.node import auth
from storage.migrate.copier import Write

SECRET = "a-cluster-secret-of-at-least-32-bytes!!"


async def _serve(handler):
    app = web.Application()
    app.router.add_put(gateway_copy.PATH, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _writes(n: int) -> list[tuple[Write, bytes]]:
    return [(Write("b", f"k{i}", 3 + i), bytes(range(3 + i))) for i in range(n)]


def test_a_gateway_of_another_route_version_is_given_up_at_once():
    seen = []

    async def old_gateway(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.json_response({"version_id": "x", "etag": "y"}, headers={gateway_copy.ROUTE_HEADER: "1"})

    async def main():
        runner, url = await _serve(old_gateway)
        sender = gateway_copy.Sender(url, SECRET)
        try:
            first = await asyncio.gather(*(sender.send(w, d) for w, d in _writes(5)))
            later = await sender.send(*_writes(1)[0])
            return first, later, sender.off, sender.written
        finally:
            await sender.close()
            await runner.cleanup()
    first, later, off, written = asyncio.run(main())
    assert first == [None] * 5 and later is None and written == 0
    assert "copy route '1'" in off and "same Pocket release" in off
    assert len(seen) == 1          # the versions went together, and nothing was sent after


def test_versions_the_gateway_could_not_store_come_back_and_the_rest_count():
    batches = []

    async def gateway(request: web.Request) -> web.Response:
        batch = gateway_copy.unpack((await request.read())[:-auth.TAG_SIZE])
        batches.append([w.key for w, _ in batch])
        answers = [{"error": "BadDigest", "message": "no"} if w.key == "k2" else {"version_id": "v", "etag": w.key}
                   for w, _ in batch]
        return web.json_response(answers, headers={gateway_copy.ROUTE_HEADER: gateway_copy.ROUTE_VERSION})

    async def main():
        runner, url = await _serve(gateway)
        sender = gateway_copy.Sender(url, SECRET)
        try:
            got = await asyncio.gather(*(sender.send(w, d) for w, d in _writes(gateway_copy.MAX_BATCH + 6)))
            return got, sender.written, sender.requests, sender.off
        finally:
            await sender.close()
            await runner.cleanup()
    got, written, requests, off = asyncio.run(main())
    n = gateway_copy.MAX_BATCH + 6
    assert off is None
    assert [g and g["etag"] for g in got] == [None if i == 2 else f"k{i}" for i in range(n)]
    assert written == n - 1
    assert sorted(k for b in batches for k in b) == sorted(f"k{i}" for i in range(n))   # each sent once
    assert all(len(b) <= gateway_copy.MAX_BATCH for b in batches) and requests == len(batches) < n


def test_a_gateway_that_stopped_answering_is_tried_again_later(monkeypatch):
    """A gateway restarted for an upgrade answers again in seconds: a copy of many hours
    must not write everything itself from then on. Versions sent while it is away come
    back to be written here; once it answers again they go to it."""
    monkeypatch.setattr(gateway_copy, "RETRY_AFTER", 0.3)

    async def gateway(request: web.Request) -> web.Response:
        batch = gateway_copy.unpack((await request.read())[:-auth.TAG_SIZE])
        return web.json_response([{"version_id": "v", "etag": w.key} for w, _ in batch],
                                 headers={gateway_copy.ROUTE_HEADER: gateway_copy.ROUTE_VERSION})

    async def main():
        runner, url = await _serve(gateway)
        port = int(url.rsplit(":", 1)[1])
        sender = gateway_copy.Sender(url, SECRET)
        try:
            write, data = _writes(1)[0]
            assert (await sender.send(write, data))["etag"] == "k0"
            await runner.cleanup()                      # the gateway goes away
            assert await sender.send(write, data) is None
            assert sender.off is not None and await sender.send(write, data) is None   # not even tried
            app = web.Application()
            app.router.add_put(gateway_copy.PATH, gateway)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()    # back, on the same port
            deadline = asyncio.get_running_loop().time() + 10
            while (got := await sender.send(write, data)) is None:
                assert asyncio.get_running_loop().time() < deadline, sender.off
                await asyncio.sleep(0.05)
            return got, sender.off, sender.written
        finally:
            await sender.close()
            await runner.cleanup()
    got, off, written = asyncio.run(main())
    assert got["etag"] == "k0" and off is None and written == 2


def test_a_gateway_of_another_release_is_not_tried_again(monkeypatch):
    monkeypatch.setattr(gateway_copy, "RETRY_AFTER", 0.0)
    calls = []

    async def old_gateway(request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(status=403, headers={gateway_copy.ROUTE_HEADER: "1"})

    async def main():
        runner, url = await _serve(old_gateway)
        sender = gateway_copy.Sender(url, SECRET)
        try:
            return [await sender.send(*_writes(1)[0]) for _ in range(3)]
        finally:
            await sender.close()
            await runner.cleanup()
    assert asyncio.run(main()) == [None] * 3 and len(calls) == 1
