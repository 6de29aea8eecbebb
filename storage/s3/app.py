"""The S3 front door: request ids, authentication, routing, and one error renderer.

Operational endpoints live under `/_pocket/` on the same port; no valid bucket name
contains `_`, so they never collide with S3 paths.
"""
from __future__ import annotations

import functools
import logging
import os
import time

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError

from ..index import ops as index_errors
from ..objects import read_ahead
from ..objects.contracts import StoreUnavailable
from ..objects.put import NoRoom, QuorumLost
from . import access, cors, errors, router, vhost
from .names import HEADER_UNSAFE, check_bucket_name, check_key
from .request import S3Request, authenticate, new_request_id

log = logging.getLogger("pocket.s3")

# Internal failures that have an S3 meaning; everything else unexpected is a 500.
_TRANSLATE = {
    NoRoom: errors.InsufficientStorage,      # before QuorumLost: the first match wins
    index_errors.IndexFull: errors.InsufficientStorage,
    index_errors.IndexUnavailable: errors.SlowDown,   # SDKs retry it; the index reconnects by itself
    index_errors.Conflicted: errors.SlowDown,         # other gateways kept winning: a retry commits
    QuorumLost: errors.ServiceUnavailable,
    StoreUnavailable: functools.partial(errors.ServiceUnavailable, "This bucket is being migrated and its "
                                         "source store cannot be reached right now; retry shortly."),
    index_errors.NoSuchBucket: errors.NoSuchBucket,
    index_errors.BucketNotEmpty: errors.BucketNotEmpty,
}


class _OneLineParseErrors(logging.Filter):
    """aiohttp logs a full traceback for every malformed HTTP message a client sends (it
    answers 400 itself): one line says all there is to say, and keeps a scanner from
    flooding the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = f"{record.getMessage()}: answered 400, {type(exc).__name__}: {exc}", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def build_app(gateway, internal_puts=()) -> web.Application:
    """`internal_puts`: (path, receive, operation, (marker header, value)) of the gateway's own PUT
    routes for other Pocket processes (storage/migrate/gateway_copy.py), passed in by the
    gateway so that s3/ does not import the layers above it."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _OneLineParseErrors) for f in server_log.filters):
        server_log.addFilter(_OneLineParseErrors())
    # auto_decompress off: a body sent with Content-Encoding: gzip is an object stored as sent.
    # keepalive_timeout: aiohttp's timer runs from a connection's opening (and from each
    # response) until a request's headers are complete, so it bounds slow headers too.
    app = web.Application(client_max_size=1 << 20,
                          handler_args={"max_field_size": 16384, "auto_decompress": False,
                                        "keepalive_timeout": gateway.cfg.gateway.header_timeout})
    app["gateway"] = gateway
    app.on_response_prepare.append(_stamp)
    app.router.add_get("/_pocket/health", health)
    app.router.add_get("/_pocket/ready", ready)
    app.router.add_get("/_pocket/metrics", metrics)
    for path, receive, operation, marker in internal_puts:
        app.router.add_put(path, _internal_put(receive, operation, marker))
    app.router.add_route("*", "/{path:.*}", s3_entry, expect_handler=_expect)
    return app


async def _expect(http: web.Request) -> None:
    """`Expect: 100-continue` is answered when the handler first reads the body (body.raw_body),
    so a request refused before that (bad signature, no access) gets its 403 without the
    client sending the body, as S3 answers; any other expectation is ignored, as S3 does
    (aiohttp's own 417 for one it does not know failed with a 500 on non-UTF-8 bytes)."""
    if http.version == HttpVersion11 and http.headers.get("Expect", "").lower() == "100-continue":
        http["expect_continue"] = True


async def health(request: web.Request) -> web.Response:
    """Alive; with several workers (storage/workers.py) also which one answered."""
    return web.json_response({"status": "ok", "pid": os.getpid(), "worker": request.app["gateway"].worker})


async def ready(request: web.Request) -> web.Response:
    state = request.app["gateway"].readiness()
    return web.json_response(state, status=200 if state["ready"] else 503)


async def metrics(request: web.Request) -> web.Response:
    gw = request.app["gateway"]
    await gw.refresh_metrics()
    return web.Response(body=gw.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})


async def s3_entry(http: web.Request) -> web.StreamResponse:
    gw = http.app["gateway"]
    request_id = http["request_id"] = new_request_id()
    started = http["started"] = time.perf_counter()
    http["operation"] = "unknown"
    bucket = key = ""
    try:
        bucket, key = vhost.locate(http.headers.get("Host"), http.raw_path, gw.domains)
        http["bucket"], http["key"] = bucket, key
        if bucket:   # every route, reads too: no name or key S3 refuses reaches the index
            check_bucket_name(bucket)
        if key:
            check_key(key)
        await read_ahead.read(gw.index, bucket, key)
        http["cors"] = cors.response_headers(http, gw, bucket)
        resp = await _dispatch(http, gw, request_id, bucket, key)
    except errors.S3Error as e:
        resp = _error_response(http, e, request_id, bucket, key)
        if isinstance(e, errors.RequestTimeout):
            await _answer_and_hang_up(http, resp)
    except Exception as e:
        resp = _failure_response(http, e, request_id, bucket, key)
    if http.get("expect_continue") and not http.get("continued"):
        resp.force_close()   # the client may never send the body it held back: end the connection
    if resp.status >= 400 and "error_code" not in http:   # answered by a handler without an S3Error
        http["error_code"] = str(resp.status)
    operation = http["operation"]
    gw.metrics.request_done(operation, resp.status, time.perf_counter() - started)
    return resp


def _internal_put(receive, operation: str, marker: tuple[str, str]):
    """A handler answering like s3_entry (request id, S3 error bodies, metrics) for a route
    whose `receive(http, gateway)` does the work; `marker` (a header and its value) tells
    its caller the route exists, and which version of it."""
    async def handle(http: web.Request) -> web.Response:
        gw = http.app["gateway"]
        request_id = http["request_id"] = new_request_id()
        started = http["started"] = time.perf_counter()
        http["operation"] = operation
        try:
            resp = await receive(http, gw)
        except errors.S3Error as e:
            resp = _error_response(http, e, request_id, "", "")
        except Exception as e:
            resp = _failure_response(http, e, request_id, "", "")
        resp.headers[marker[0]] = marker[1]
        gw.metrics.request_done(operation, resp.status, time.perf_counter() - started)
        return resp
    return handle


def _failure_response(http: web.Request, e: Exception, request_id: str, bucket: str, key: str) -> web.Response:
    """The answer to an exception that is not an S3Error: its S3 meaning, else a logged 500
    (called in the `except` block, so the log has the traceback)."""
    for kind, cls in _TRANSLATE.items():
        if isinstance(e, kind):
            s3e = cls(resource=f"/{bucket}")
            log.warning("%s %s -> %s: %s", http.method, http.path, s3e.code, e)
            return _error_response(http, s3e, request_id, bucket, key)
    log.exception("%s %s failed (request %s)", http.method, http.path, request_id)
    return _error_response(http, errors.InternalError(), request_id, bucket, key)


async def _dispatch(http: web.Request, gw, request_id: str, bucket: str, key: str) -> web.StreamResponse:
    if http.method == "OPTIONS":  # a CORS preflight: browsers never sign it
        http["operation"] = "preflight"
        return await cors.preflight(http, gw, bucket)
    auth = authenticate(http, gw.secret_for, vhost.bucket_from_host(http.headers.get("Host"), gw.domains))
    http["user"] = auth.access_key if auth else ""
    try:
        handler = router.resolve(http.method, bucket, key, http.query)
    except errors.S3Error:
        if auth is None:
            access.refuse_anonymous()
        raise
    http["operation"] = handler.__name__
    if auth is None:
        access.check_anonymous(handler)
    access.check_expected_owner(gw.buckets, bucket, http.headers)
    if handler in router.UPLOADS:
        with gw.upload_slots.claim():
            return await handler(S3Request(http, gw, request_id, bucket, key, auth))
    return await handler(S3Request(http, gw, request_id, bucket, key, auth))


async def _answer_and_hang_up(http: web.Request, resp: web.Response) -> None:
    """Send the error, then close the connection at once: aiohttp would otherwise keep
    reading (lingering) what is left of a body that has stalled or trickles."""
    resp.force_close()
    await resp.prepare(http)
    await resp.write_eof()
    http.protocol.force_close()


async def _stamp(http: web.Request, resp: web.StreamResponse) -> None:
    """Every response, streamed or not, carries the request id S3 clients log; and no
    header value that would end the header early (aiohttp would drop the connection)."""
    for name, value in list(resp.headers.items()):
        if HEADER_UNSAFE.search(value):
            log.warning("%s %s: response header %s had a control character or raw byte; sent without it "
                        "(a value stored before it was checked?)", http.method, http.path, name)
            resp.headers[name] = HEADER_UNSAFE.sub(" ", value)
    request_id = http.get("request_id") or new_request_id()
    resp.headers["x-amz-request-id"] = request_id
    resp.headers["x-amz-id-2"] = request_id
    resp.headers["Server"] = "Pocket"
    for name, value in (http.get("cors") or {}).items():
        resp.headers.setdefault(name, value)


def _error_response(http: web.Request, e: errors.S3Error, request_id: str, bucket: str, key: str) -> web.Response:
    resource = f"/{bucket}/{key}" if key else f"/{bucket}" if bucket else "/"
    headers = dict(e.headers)
    if e.code == "InvalidRange" and "ActualObjectSize" in e.extra:
        headers["Content-Range"] = f"bytes */{e.extra['ActualObjectSize']}"
    if http.method == "HEAD":
        resp = web.Response(status=e.status, headers=headers)
    else:
        resp = web.Response(status=e.status, body=e.to_xml(request_id, resource), headers=headers,
                            content_type="application/xml")
    http["error_code"] = e.code   # for the access log (storage/s3/access_log.py)
    return resp
