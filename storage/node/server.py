"""The disk server: serves the fragment stores of one node over the internal HTTP API.

Routes (all HMAC-authenticated, bodies tagged, replays refused: see auth.py, archive_tag.py):
    PUT    /v1/{disk}/archives/{name}            stream an archive in (committed on a valid tag, records and footer)
    GET    /v1/{disk}/archives/{name}?offset=&length=   ranged read
    GET    /v1/{disk}/archives/{name}/manifest   the manifest in the archive's trailer
    GET    /v1/{disk}/archives                   NDJSON listing: {"name", "size"}
    PUT    /v1/{disk}/batch                      small archives, records and deletes together (batch.py):
                                                 the one way records are written and archives deleted
    PUT    /v1/{disk}/fetch                      small reads and stats together (fetch.py)
    GET    /v1/{disk}/records                 NDJSON listing: {"id", "data"}
    GET    /v1/{disk}/scrub                      the disk scrubber's progress and findings
    POST   /v1/{disk}/scrub?rate=                start a full scrub pass now: {"pass": number}
    GET    /v1/health                            node and per-disk usage
    GET    /metrics                              Prometheus metrics, unauthenticated (metrics.py)
"""
from __future__ import annotations

import asyncio
import errno
import json
import logging

from aiohttp import web

from .. import layout
from . import auth, batch, fetch
from .archive_tag import records_problem, verified_archive
from .metrics import NodeMetrics
from .store import ArchiveMissing, BadName, DiskStore
from ..numbers import decimal

log = logging.getLogger("pocket.node")

_BODY_CHUNK = 1 << 20


def build_app(node_id: str, stores: dict[str, DiskStore], secret: str, *, replay=None, counted: bool = True,
              front=None) -> web.Application:
    """`replay`, `counted`, `front`: for a node of several processes (processes.py), the
    nonces they share, whether this app's requests count in its metrics (not those
    forwarded from a sibling, counted where they arrived) and the middleware that sends a
    request for a sibling's disk there."""
    metrics = NodeMetrics(stores)
    middlewares = [metrics.middleware] if counted else []
    middlewares += [_authenticate(node_id, secret, replay or auth.ReplayCache())] + ([front] if front else [])
    app = web.Application(middlewares=middlewares, client_max_size=1 << 20)
    app["stores"], app["node_id"], app["secret"] = stores, node_id, secret
    r = app.router
    r.add_get("/metrics", metrics.handler)
    r.add_get("/v1/health", health)
    r.add_put("/v1/{disk}/archives/{name}", put_archive)
    r.add_get("/v1/{disk}/archives/{name}", get_archive, allow_head=False)
    r.add_get("/v1/{disk}/archives/{name}/manifest", get_manifest)
    r.add_get("/v1/{disk}/archives", list_archives)
    r.add_put("/v1/{disk}/batch", put_batch)
    r.add_put("/v1/{disk}/fetch", put_fetch)
    r.add_get("/v1/{disk}/records", list_records)
    r.add_get("/v1/{disk}/scrub", scrub_state)
    r.add_post("/v1/{disk}/scrub", scrub_request)
    return app


def _authenticate(node_id: str, secret: str, replay):

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.method == "GET" and request.path == "/metrics":
            return await handler(request)       # like the gateway's /_pocket/metrics: no secrets in there
        why = auth.verify(secret, request.method, request.path_qs, node_id, request.headers, replay)
        if why is None and request.method != "PUT" and request.body_exists:
            why = f"a {request.method} request must not carry a body"
        if why is not None:
            return _refuse(request, why)
        try:
            return await handler(request)
        except auth.BadBody as e:
            return _refuse(request, str(e))
        except BadName as e:
            return web.json_response({"error": str(e)}, status=400)
        except ArchiveMissing:
            return web.json_response({"error": "no such archive"}, status=404)
        except layout.CorruptFragment as e:
            return web.json_response({"error": f"corrupt: {e}"}, status=422)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            log.error("disk full on %s %s: %s", request.method, request.path, e)
            return web.json_response({"error": "No space left on device"}, status=507)
    return middleware


def _refuse(request: web.Request, why: str) -> web.Response:
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, why)
    return web.json_response({"error": f"refused: {why}"}, status=403,
                             headers={auth.LINK_HEADER: auth.LINK_VERSION})   # lets a client tell a release mismatch


def _store(request: web.Request) -> DiskStore:
    store = request.app["stores"].get(request.match_info["disk"])
    if store is None:
        raise web.HTTPNotFound(text=f"no disk {request.match_info['disk']!r} on this node")
    return store


async def health(request: web.Request) -> web.Response:
    disks = [s.usage() for s in request.app["stores"].values()]
    return web.json_response({"node": request.app["node_id"], "disks": disks})


async def put_archive(request: web.Request) -> web.Response:
    # up to 1 MiB of what has arrived at a time: iter_any's socket-sized pieces each cost a
    # trip through the tag check and the store (profiled: thousands per GiB)
    return await store_archive(request, _store(request), request.content.iter_chunked(_BODY_CHUNK))


async def store_archive(request: web.Request, store: DiskStore, chunks) -> web.Response:
    """The archive `chunks` (the request's body, or what is left of it after a look at its
    head: processes.py) checked against the request's tag and committed to `store`."""
    body = verified_archive(request.app["secret"], request.headers, chunks)
    size = await store.put_archive(request.match_info["name"], body)
    return web.json_response({"size": size}, status=201)


async def get_archive(request: web.Request) -> web.Response:
    store = _store(request)
    try:
        offset = int(request.query.get("offset", 0))
        length = int(request.query.get("length", 1 << 62))
    except ValueError:
        raise web.HTTPBadRequest(text="offset and length must be integers") from None
    if offset < 0 or length < 0:
        raise web.HTTPBadRequest(text="offset and length must not be negative")
    found, first = await store.open_range(request.match_info["name"], offset, length, _BODY_CHUNK)
    reading = None
    try:
        if len(first) == found.length:
            return web.Response(body=first, content_type="application/octet-stream")
        # the rest of a long range (a gateway streams one per fragment for a whole GET,
        # client.RangeStream) as it is read: a piece in flight, the next read meanwhile
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = found.length
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        piece, left = first, found.length - len(first)
        while piece:
            reading = loop.run_in_executor(None, found.read, _BODY_CHUNK) if left else None
            await resp.write(piece)
            piece = await reading if reading else b""
            left -= len(piece)
        await resp.write_eof()
        return resp
    finally:
        if reading is not None and not reading.done():   # the client went away mid-read
            reading.add_done_callback(lambda _: found.close())
        else:
            found.close()


async def get_manifest(request: web.Request) -> web.Response:
    return web.json_response(await _store(request).read_manifest(request.match_info["name"]))


async def put_batch(request: web.Request) -> web.Response:
    """Each operation applied as its own request would be, all at once (the packs give
    them one fsync); one outcome per operation, so one bad name fails only itself."""
    store = _store(request)
    try:
        ops = batch.unpack(auth.check_tagged(request.app["secret"], request.headers, await request.read()))
    except batch.BadBatch as e:
        return web.json_response({"error": str(e)}, status=400)
    done = await asyncio.gather(*(_apply(store, kind, name, data) for kind, name, data in ops),
                                return_exceptions=True)
    return web.json_response([_outcome(r, store.disk_id) for r in done])


async def put_fetch(request: web.Request) -> web.Response:
    """Reads and stats asked together, answered in one thread hop (fetch.py)."""
    store = _store(request)
    try:
        ops = batch.unpack(auth.check_tagged(request.app["secret"], request.headers, await request.read()),
                           fetch.KINDS)
    except batch.BadBatch as e:
        return web.json_response({"error": str(e)}, status=400)
    body = fetch.serve_cached(store, ops)
    if body is None:
        body = await asyncio.get_running_loop().run_in_executor(None, fetch.serve, store, ops)
    return web.Response(body=body, content_type="application/octet-stream")


async def _apply(store: DiskStore, kind: bytes, name: str, data: bytes) -> bool | int | None:
    if kind == batch.RECORD:
        await store.put_record(name, data)
        return None
    if kind == batch.ARCHIVE:
        problem = records_problem(data)    # at most SMALL_ARCHIVE bytes: ~0.3 ms, on the loop
        if problem:
            raise layout.CorruptFragment(problem)
        return await store.put_archive(name, _once(data))
    return await store.delete_archive(name, durable=kind == batch.DELETE)


async def _once(data: bytes):
    yield data


def _outcome(result, disk_id: str) -> dict:
    if not isinstance(result, BaseException):
        return {"value": result}
    if isinstance(result, BadName):
        return {"error": str(result), "status": 400}
    if isinstance(result, layout.CorruptFragment):
        return {"error": f"corrupt: {result}", "status": 422}
    if isinstance(result, OSError) and result.errno == errno.ENOSPC:
        return {"error": "No space left on device", "status": 507}
    if not isinstance(result, Exception):
        raise result     # cancelled: the request is going away
    log.error("batch operation failed on disk %s: %r", disk_id, result)
    return {"error": repr(result), "status": 500}


async def list_archives(request: web.Request) -> web.StreamResponse:
    rows = ({"name": n, "size": s} for n, s in _store(request).list_archives())
    return await _ndjson(request, rows)


async def list_records(request: web.Request) -> web.StreamResponse:
    rows = ({"id": i, "data": d.decode()} for i, d in _store(request).list_records())
    return await _ndjson(request, rows)


async def scrub_state(request: web.Request) -> web.Response:
    return web.json_response(await _scrubbed(request).scrub_state())


async def scrub_request(request: web.Request) -> web.Response:
    given = request.query.get("rate")
    rate = None if given is None else decimal(given)
    if given is not None and rate is None:
        raise web.HTTPBadRequest(text="rate must be a whole number of bytes per second (0: unlimited)")
    number = await _scrubbed(request).scrub_request(rate)
    return web.json_response({"pass": number}, status=202)


def _scrubbed(request: web.Request) -> DiskStore:
    store = _store(request)
    if store.scrubber is None:
        raise web.HTTPServiceUnavailable(text=f"disk {store.disk_id} has no scrubber in this process")
    return store


async def _ndjson(request: web.Request, rows) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    batch = []
    for row in rows:
        batch.append(json.dumps(row))
        if len(batch) >= 512:
            await resp.write(("\n".join(batch) + "\n").encode())
            batch = []
    if batch:
        await resp.write(("\n".join(batch) + "\n").encode())
    await resp.write_eof()
    return resp
