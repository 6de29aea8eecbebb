"""One access-log line per S3 request, written after its response has been sent.

The fields are those of S3's server access log (request id, requester, bucket, key,
operation, status, error code, bytes, total time, remote address, user agent), so a
client's complaint quoting the `x-amz-request-id` it saw finds its line with one grep.
aiohttp calls this once the last byte went out, so `duration_ms` and `bytes_out`
cover streamed GETs too. The `/_pocket/` endpoints (health checks, scrapes every few
seconds) are left out: they would drown the requests.
"""
from __future__ import annotations

import time as clock
from urllib.parse import quote

from aiohttp.abc import AbstractAccessLogger


def logger_class(metrics=None) -> type[AbstractAccessLogger]:
    """aiohttp makes its access logger itself, from a class: this one also counts bytes in `metrics`."""
    return type("AccessLogger", (AccessLogger,), {"metrics": metrics})


class AccessLogger(AbstractAccessLogger):
    metrics = None   # the gateway's (storage/metrics.py): bytes received and sent

    def log(self, request, response, time: float) -> None:
        if request.path.startswith("/_pocket/"):
            return
        bytes_in = request.content.total_bytes
        bytes_out = _body_bytes(request, response)
        started = request.get("started")   # set by the S3 entry point; aiohttp's own clock ticks in ms
        if started is not None:
            time = clock.perf_counter() - started
        if self.metrics is not None:
            self.metrics.bytes_out.inc(bytes_out)
        fields = {
            "request_id": request.get("request_id", ""),
            "remote": request.remote or "",
            "user": request.get("user", ""),
            "method": request.method,
            "bucket": request.get("bucket", ""),
            "key": request.get("key", ""),
            "operation": request.get("operation", "bad_request"),   # never reached the S3 entry point
            "status": response.status,
            "error": request.get("error_code", ""),
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "duration_ms": round(time * 1000, 2),
            "user_agent": request.headers.get("User-Agent", ""),
        }
        # a key that is not UTF-8 arrives surrogate-escaped (request.split_path): its raw bytes are quoted
        where = quote(fields["bucket"] + ("/" + fields["key"] if fields["key"] else ""), safe="/",
                      errors="surrogateescape")
        self.logger.info("%s %s %s %s %d%s user=%s in=%d out=%d %.1fms from %s", fields["request_id"],
                         fields["method"], where or "/", fields["operation"], fields["status"],
                         f" {fields['error']}" if fields["error"] else "", fields["user"] or "-", bytes_in,
                         bytes_out, fields["duration_ms"], fields["remote"], extra={"fields": fields})


def _body_bytes(request, response) -> int:
    """Body bytes sent (S3's "Bytes Sent"): aiohttp counts headers too, so a body of known
    length counts as that length unless the connection was cut before it all went out."""
    if request.method == "HEAD" or response.status in (204, 304):
        return 0
    sent, declared = response.body_length, response.content_length
    return min(sent, declared) if declared is not None else sent

