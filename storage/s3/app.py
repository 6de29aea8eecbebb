"""The S3 front door: request ids, authentication, routing, and one error renderer.

Operational endpoints live under `/_pocket/` on the same port; no valid bucket name
contains `_`, so they never collide with S3 paths.
"""
from __future__ import annotations

import logging
import time

from aiohttp import web

from ..index import ops as index_errors
from ..objects.put import NoRoom, QuorumLost
from . import access, cors, errors, router, vhost
from .request import S3Request, authenticate, new_request_id

log = logging.getLogger("pocket.s3")

# Internal failures that have an S3 meaning; everything else unexpected is a 500.
_TRANSLATE = {
    NoRoom: errors.InsufficientStorage,      # before QuorumLost: the first match wins
    index_errors.IndexFull: errors.InsufficientStorage,
    QuorumLost: errors.ServiceUnavailable,
    index_errors.NoSuchBucket: errors.NoSuchBucket,
    index_errors.BucketNotEmpty: errors.BucketNotEmpty,
}


def build_app(gateway) -> web.Application:
    # auto_decompress off: a body sent with Content-Encoding: gzip is an object stored as sent.
    app = web.Application(client_max_size=1 << 20,
                          handler_args={"max_field_size": 16384, "auto_decompress": False})
    app["gateway"] = gateway
    app.on_response_prepare.append(_stamp)
    app.router.add_get("/_pocket/health", health)
    app.router.add_get("/_pocket/ready", ready)
    app.router.add_get("/_pocket/metrics", metrics)
    app.router.add_route("*", "/{path:.*}", s3_entry)
    return app


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    state = request.app["gateway"].readiness()
    return web.json_response(state, status=200 if state["ready"] else 503)


async def metrics(request: web.Request) -> web.Response:
    gw = request.app["gateway"]
    gw.refresh_metrics()
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
        http["cors"] = cors.response_headers(http, gw, bucket)
        resp = await _dispatch(http, gw, request_id, bucket, key)
    except errors.S3Error as e:
        resp = _error_response(http, e, request_id, bucket, key)
    except tuple(_TRANSLATE) as e:
        s3e = next(cls for kind, cls in _TRANSLATE.items() if isinstance(e, kind))(resource=f"/{bucket}")
        log.warning("%s %s -> %s: %s", http.method, http.path, s3e.code, e)
        resp = _error_response(http, s3e, request_id, bucket, key)
    except Exception:
        log.exception("%s %s failed (request %s)", http.method, http.path, request_id)
        resp = _error_response(http, errors.InternalError(), request_id, bucket, key)
    if resp.status >= 400 and "error_code" not in http:   # answered by a handler without an S3Error
        http["error_code"] = str(resp.status)
    operation = http["operation"]
    gw.metrics.requests.labels(operation, str(resp.status)).inc()
    gw.metrics.latency.labels(operation).observe(time.perf_counter() - started)
    return resp


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
    return await handler(S3Request(http, gw, request_id, bucket, key, auth))


async def _stamp(http: web.Request, resp: web.StreamResponse) -> None:
    """Every response, streamed or not, carries the request id S3 clients log."""
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
