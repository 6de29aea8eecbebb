"""aiohttp imported for a one-shot command without loading the system trust store at import.

Why: aiohttp.connector builds two default TLS contexts when it is imported, and each loads
the system CA store (`set_default_verify_paths`: 33-37 ms of CPU each on the 2-core bench
box, ~70 of the ~300 ms a `pocket repair` of an empty queue costs; cProfile with thread
CPU time). A one-shot command reaches nodes over http, or over https with the node's own
pinned context (node/tls.py), so those two contexts are rarely used at all.

How it stays right: while aiohttp is imported here, a context that asks for the default
verify paths gets them at its first handshake instead (its `wrap_bio`, which asyncio
calls, or `wrap_socket`), so anything that does use one still verifies against the system
store. Only the import is covered; contexts made afterwards are untouched.
"""
from __future__ import annotations

import ssl
import sys
import threading
from types import ModuleType

_REAL = ssl.SSLContext.set_default_verify_paths
_LOCK = threading.Lock()


def import_aiohttp() -> ModuleType:
    """`import aiohttp`, its default TLS contexts loading the trust store at first use."""
    if "aiohttp" in sys.modules:
        return sys.modules["aiohttp"]
    with _LOCK:
        own = ssl.SSLContext.__dict__.get("set_default_verify_paths")   # None: _ssl's, inherited
        ssl.SSLContext.set_default_verify_paths = _defer
        try:
            import aiohttp
        finally:
            if own is None:
                del ssl.SSLContext.set_default_verify_paths
            else:
                ssl.SSLContext.set_default_verify_paths = own
    return aiohttp


def _defer(ctx: ssl.SSLContext) -> None:
    """Stand-in for set_default_verify_paths during the import: load at the first handshake."""
    def first(method: str):
        def wrapped(*args, **kw):
            _load(ctx)
            return getattr(ssl.SSLContext, method)(ctx, *args, **kw)
        return wrapped
    ctx.wrap_bio = first("wrap_bio")
    ctx.wrap_socket = first("wrap_socket")


def _load(ctx: ssl.SSLContext) -> None:
    if ctx.__dict__.pop("wrap_bio", None) is not None:
        ctx.__dict__.pop("wrap_socket", None)
        _REAL(ctx)
