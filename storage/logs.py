"""Logging of a serving process (gateway or node): one destination, one format.

Operators grep text and ship JSON, so both are offered with the same content: in JSON
every line is one object whose fields (the access log's request id, bucket, status...)
need no parsing. A log file is reopened on SIGHUP (`reopen()`), which is what logrotate
and similar tools expect after they move it away; nothing is lost in between because
the old file stays open until then.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback

_handler: logging.Handler | None = None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": _iso(record.created), "level": record.levelname.lower(), "logger": record.name}
        fields = getattr(record, "fields", None)
        if fields:   # structured events (the access log): the fields are the message
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(line, separators=(",", ":"), default=str)


class _TextFormatter(logging.Formatter):
    """UTC timestamps, formatted once per second: strftime for every access-log line was
    3 % of a small DELETE's CPU."""
    _cached = (-1, "")   # (second, its text): one attribute, so threads never see half an update

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second, text = self._cached
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, text)
        return text


class ReopeningFileHandler(logging.StreamHandler):
    """Appends to a file; `reopen()` switches to whatever file is at the path now."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(open(path, "a", encoding="utf-8"))

    def reopen(self) -> None:
        fresh = open(self.path, "a", encoding="utf-8")
        self.acquire()
        try:
            old, self.stream = self.stream, fresh
        finally:
            self.release()
        old.close()

    def close(self) -> None:
        self.acquire()
        try:
            self.stream.close()
        finally:
            self.release()
        super().close()


class ClientMistakes(logging.Filter):
    """aiohttp logs a malformed request (bad framing, missing Host, oversized headers) and a
    peer that hangs up mid-request as errors with a traceback. Neither is a bug here: the
    first was answered 400 (and has its access-log line), the second is a client or a
    gateway going away, whose request changed nothing. Each becomes one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            why = f"answered 400: {exc.message}"
        elif isinstance(exc, ConnectionResetError):
            why = "the peer hung up before the request was complete; nothing of it was kept"
        else:
            return True
        record.msg, record.args = "%s (%s)", (record.getMessage(), why)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(log_cfg, stream=sys.stdout) -> None:
    """Send every log record of this process to `log.file`, or to `stream` without one."""
    global _handler
    _skip_unused_fields()
    if log_cfg.file:
        os.makedirs(os.path.dirname(log_cfg.file) or ".", exist_ok=True)
    handler = ReopeningFileHandler(log_cfg.file) if log_cfg.file else logging.StreamHandler(stream)
    if log_cfg.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(log_cfg.level.upper())
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientMistakes) for f in server.filters):
        server.addFilter(ClientMistakes())
    _handler = handler


def _skip_unused_fields() -> None:
    """Neither format prints where a line was logged from nor which thread or process logged
    it, and each record looked them up: the caller's frame, pid, thread and process names
    were a third of an access-log line's cost (61 -> 40 us each, 2-8 % of a small PUT's
    or DELETE's CPU: py-spy). The logging HOWTO's "Optimization" switches."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def reopen() -> None:
    """SIGHUP: start writing to the file now at `log.file` (after rotation moved the old one)."""
    if isinstance(_handler, ReopeningFileHandler):
        _handler.reopen()
        logging.getLogger("pocket").info("log file %s reopened", _handler.path)


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
