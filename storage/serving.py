"""How a serving process (gateway or node) listens, reloads and stops without failing a request.

- Listening: plain TCP, TLS (storage/tls.py), or a socket inherited from systemd
  (`LISTEN_FDS`, a `.socket` unit). An inherited socket stays open in the parent
  while the process restarts, so connections made meanwhile wait in its backlog
  instead of being refused: a restart is a pause, not an outage.
- SIGHUP: reload what can change under a running process (certificate, log file).
- SIGTERM/SIGINT: readiness turns false first (`on_drain`), `drain_delay` seconds later
  the listener closes, then requests in flight get up to `shutdown_timeout` seconds to
  finish (idle keep-alive connections are closed at once), then the process exits 0.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable

from aiohttp import web

from .s3 import access_log as access_logs

log = logging.getLogger("pocket.serving")

SD_LISTEN_FDS_START = 3   # systemd passes sockets from fd 3 on


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd (or a test standing in for it) passed as fd 3, if any."""
    fds = os.environ.get("LISTEN_FDS")
    pid = os.environ.get("LISTEN_PID")
    if not fds or int(fds) < 1 or (pid and int(pid) != os.getpid()):
        return None
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):  # not for our children
        os.environ.pop(name, None)
    return socket.socket(fileno=SD_LISTEN_FDS_START)


async def listen(app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                 shutdown_timeout: float = 30.0, access_log: bool = False, metrics=None,
                 sock: socket.socket | None = None) -> web.AppRunner:
    """`access_log`: one line per request (storage/s3/access_log.py), its bytes counted in `metrics`."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout,
                           access_log=logging.getLogger("pocket.access") if access_log else None,
                           access_log_class=access_logs.logger_class(metrics))
    await runner.setup()
    if sock is not None:
        site = web.SockSite(runner, sock, ssl_context=ssl_context, backlog=1024)
    else:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True, backlog=1024)
    await site.start()
    return runner


async def run_until_stopped(runner: web.AppRunner, *, on_reload: Callable[[], None] = lambda: None,
                            on_drain: Callable[[], None] = lambda: None, drain_delay: float = 0.0) -> None:
    """Serve until SIGTERM or SIGINT, then drain as the module docstring says."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    try:
        await stop.wait()
    finally:
        on_drain()
        if drain_delay:
            log.info("shutting down: readiness is false; closing the listener in %.1fs", drain_delay)
            await asyncio.sleep(drain_delay)
        open_now = len(runner.server.connections) if runner.server else 0
        log.info("shutting down: closing the listener, finishing requests in flight (%d connections open)", open_now)
        await runner.cleanup()
        log.info("shutdown complete")
