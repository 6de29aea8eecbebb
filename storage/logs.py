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
            line["error"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(line, separators=(",", ":"), default=str)


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


def configure(log_cfg, stream=sys.stdout) -> None:
    """Send every log record of this process to `log.file`, or to `stream` without one."""
    global _handler
    handler = ReopeningFileHandler(log_cfg.file) if log_cfg.file else logging.StreamHandler(stream)
    if log_cfg.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
                                      "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(log_cfg.level.upper())
    _handler = handler


def reopen() -> None:
    """SIGHUP: start writing to the file now at `log.file` (after rotation moved the old one)."""
    if isinstance(_handler, ReopeningFileHandler):
        _handler.reopen()
        logging.getLogger("pocket").info("log file %s reopened", _handler.path)


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
