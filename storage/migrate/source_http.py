"""Kept connections to the source over the stdlib's http.client: the one way the migration
talks to the source without botocore from a thread (listings, list_http.py; large bodies,
source_body.py).

http.client costs no import worth measuring (aiohttp's, with the two TLS contexts its
connector builds, was ~40 % of an empty copy's start-up), and its blocking reads release
the GIL, so a body can be received in a thread while the event loop encodes the last one.
Connections are kept per host and lent to one request at a time: a thread takes one, and
gives it back only when the answer was read whole (anything else may leave bytes on the
wire). A kept connection the server closed while idle is replaced once, as urllib3 does.
TLS trusts what botocore trusts (source_common.ssl_context); the environment's proxy is
used as botocore would (a plain proxy gets the whole URL, an https one a CONNECT tunnel).
"""
from __future__ import annotations

import http.client
import os
import threading
from urllib.parse import urlsplit

from . import presign, source_common


class Connections:
    """The kept connections of one source client, shared by every thread that asks it."""

    def __init__(self, client):
        self.client = client
        self._idle: dict[tuple[str, str], list] = {}
        self._lock = threading.Lock()
        self._ssl = None

    def request(self, method: str, url: str, headers: dict[str, str] | None = None):
        """(connection, response) of one request, its headers read, its body not: the caller
        reads it and hands both to `done`. Raises OSError / HTTPException when even a fresh
        connection gets no answer."""
        parts = urlsplit(url)
        sent = {"Host": presign.host_of(f"{parts.scheme}://{parts.netloc}"), **(headers or {})}
        for fresh in (False, True):
            conn, target = self._take(parts, fresh)
            try:
                conn.request(method, target, headers=sent)
                return conn, conn.getresponse()
            except (OSError, http.client.HTTPException):
                conn.close()
                if fresh:
                    raise
        raise AssertionError("unreachable")

    def done(self, url: str, conn, response, whole: bool) -> None:
        """Keep the connection for the next request when its answer was read `whole`, else close it."""
        if whole and not response.will_close and conn.sock is not None:
            parts = urlsplit(url)
            with self._lock:
                self._idle.setdefault((parts.scheme, parts.netloc), []).append(conn)
        else:
            conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _take(self, url, fresh: bool):
        """(connection, request target) for the URL's host: a kept one unless `fresh`."""
        proxy = proxy_for(url)
        target = f"{url.path}?{url.query}" if url.query else url.path
        if proxy and url.scheme == "http":
            target = f"http://{url.netloc}{target}"       # a plain proxy takes the whole URL
        if not fresh:
            with self._lock:
                idle = self._idle.get((url.scheme, url.netloc))
                if idle:
                    return idle.pop(), target
        timeout = getattr(self.client, "_options", {}).get("read_timeout", 60)
        host, port = (urlsplit(proxy).hostname, urlsplit(proxy).port) if proxy else (url.hostname, url.port)
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl_context())
            if proxy:
                conn.set_tunnel(url.hostname, url.port)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        return conn, target

    def _ssl_context(self):
        with self._lock:
            if self._ssl is None:
                self._ssl = source_common.ssl_context(self.client)
            return self._ssl


def proxy_for(url) -> str | None:
    """The proxy the environment names for this host (HTTP(S)_PROXY, NO_PROXY), as botocore would use."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request
    if urllib.request.proxy_bypass(url.hostname or ""):
        return None
    return urllib.request.getproxies().get(url.scheme)
