"""How a serving process (gateway or node) listens, reloads and stops without failing a request.

- Listening: plain TCP, TLS (storage/tls.py), or a socket inherited from systemd
  (`LISTEN_FDS`, a `.socket` unit). An inherited socket stays open in the parent
  while the process restarts, so connections made meanwhile wait in its backlog
  instead of being refused: a restart is a pause, not an outage.
- SIGHUP: reload what can change under a running process (certificate, log file).
- SIGTERM/SIGINT: readiness turns false first (`on_drain`), `drain_delay` seconds later
  the listener closes, then requests in flight get up to `shutdown_timeout` seconds to
  finish (their responses say `Connection: close`), idle keep-alive connections are
  closed, and the process exits 0.
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


class InFlight:
    """Requests being handled right now, so a drain waits for them and not for idle connections.

    aiohttp's own graceful shutdown marks every connection closing, after which a busy
    one drops the rest of a request body it is still receiving: an upload in flight would
    hang until the timeout. So requests are counted here, the listener closes first,
    responses say `Connection: close` while draining, and only once nothing is in flight
    does aiohttp close what is left (idle keep-alive connections)."""

    def __init__(self):
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        self.count += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.draining:
            response.force_close()   # the client reconnects, to the listener that replaces this one

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False


class Listener:
    def __init__(self, runner: web.AppRunner, inflight: InFlight, shutdown_timeout: float):
        self.runner, self.inflight, self.shutdown_timeout = runner, inflight, shutdown_timeout


async def listen(app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                 shutdown_timeout: float = 30.0, access_log: bool = False, metrics=None,
                 sock: socket.socket | None = None) -> Listener:
    """`access_log`: one line per request (storage/s3/access_log.py), its bytes counted in `metrics`."""
    inflight = InFlight()
    app.middlewares.append(inflight.middleware)
    app.on_response_prepare.append(inflight.on_prepare)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout,
                           access_log=logging.getLogger("pocket.access") if access_log else None,
                           access_log_class=access_logs.logger_class(metrics))
    await runner.setup()
    if sock is not None:
        site = web.SockSite(runner, sock, ssl_context=ssl_context, backlog=1024)
    else:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True, backlog=1024)
    await site.start()
    return Listener(runner, inflight, shutdown_timeout)


async def run_until_stopped(listener: Listener, *, on_reload: Callable[[], None] = lambda: None,
                            on_drain: Callable[[], None] = lambda: None, drain_delay: float = 0.0,
                            stop_on=(signal.SIGINT, signal.SIGTERM)) -> None:
    """Serve until SIGTERM or SIGINT (`stop_on`), then drain as the module docstring says."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in stop_on:
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        try:
            on_reload()
        except Exception:
            log.exception("reload on SIGHUP failed; still serving with what was loaded before")
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await stop.wait()
    finally:
        await drain(listener, on_drain, drain_delay)


async def drain(listener: Listener, on_drain: Callable[[], None], drain_delay: float) -> None:
    on_drain()
    listener.inflight.draining = True
    if drain_delay:
        log.info("shutting down: readiness is false; closing the listener in %.1fs", drain_delay)
        await asyncio.sleep(drain_delay)
    runner = listener.runner
    for site in list(runner.sites):
        await site.stop()
    log.info("shutting down: listener closed; finishing %d requests in flight (at most %.0fs)",
             listener.inflight.count, listener.shutdown_timeout)
    if not await listener.inflight.wait_idle(listener.shutdown_timeout):
        log.warning("shutting down: %d requests still running after gateway.shutdown_timeout = %.0fs are cut off",
                    listener.inflight.count, listener.shutdown_timeout)
    await runner.cleanup()
    log.info("shutdown complete")
