"""How a serving process (gateway or node) listens, reloads and stops without failing a request.

- Listening: plain TCP, TLS (storage/tls.py), or a socket inherited from systemd
  (`LISTEN_FDS`, a `.socket` unit). An inherited socket stays open in the parent
  while the process restarts, so connections made meanwhile wait in its backlog
  instead of being refused: a restart is a pause, not an outage.
- SIGHUP: reload what can change under a running process (certificate, log file).
- SIGTERM/SIGINT: readiness turns false first (`on_drain`), `drain_delay` seconds later
  the listener closes and idle keep-alive connections are closed, then requests in
  flight get up to `shutdown_timeout` seconds to finish (their responses say
  `Connection: close`), and the process exits 0 (`Connections` says how).
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

from . import gc_tuning
from .s3 import access_log as access_logs

log = logging.getLogger("pocket.serving")

SD_LISTEN_FDS_START = 3   # systemd passes sockets from fd 3 on
# What aiohttp's own cleanup may wait, twice over (for a handler to end, then for it to
# take its cancellation), once `drain` has given the requests in flight their
# shutdown_timeout: given the same timeout, a client holding an upload open and sending
# nothing kept the process up ~3x shutdown_timeout (30 s said "cut off", ~90 s to exit)
_CUT_OFF = 1.0


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd (or a test standing in for it) passed as fd 3, if any."""
    fds = os.environ.get("LISTEN_FDS")
    pid = os.environ.get("LISTEN_PID")
    if not fds or int(fds) < 1 or (pid and int(pid) != os.getpid()):
        return None
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):  # not for our children
        os.environ.pop(name, None)
    return socket.socket(fileno=SD_LISTEN_FDS_START)


class Connections:
    """Which connections are busy, so a drain waits for every request and not for idle connections.

    aiohttp's own graceful shutdown (`runner.cleanup`) marks every connection closing, after
    which a busy one drops the rest of a request body it is still receiving: the upload
    hangs until `shutdown_timeout` and is cancelled. Counting requests in a middleware was
    not enough: a request whose headers had arrived but whose handler had not reached the
    middleware yet (a keep-alive connection sending its next request just as the count hit
    zero) was not counted, and was cut off that way. So the drain looks at the connections
    themselves: one is idle only while it waits for the next request's first bytes
    (nothing parsed, nothing running). Idle ones are closed on the spot, in the same step
    that finds them idle (no request can start on them in between; a client that was about
    to send one sees the connection closed before any answer, and retries, as SDKs do);
    busy ones finish their request, and while draining every response says
    `Connection: close`, so each one closes after its answer. Only once none is left does
    aiohttp's cleanup run, with nothing to cut off."""

    def __init__(self):
        self.draining = False

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.draining:
            response.force_close()   # the client reconnects, to the listener that replaces this one

    @staticmethod
    def _idle(conn) -> bool:
        # aiohttp's RequestHandler keeps `_waiter` pending only while its loop waits for a
        # new message: headers parsed, a handler running or a body still lingering all clear it
        waiter = getattr(conn, "_waiter", None)
        return waiter is not None and not waiter.done()

    def close_idle(self, server) -> int:
        """Close every idle connection; returns how many busy ones are left."""
        busy = 0
        for conn in server.connections:
            if conn.transport is None:
                continue            # already closed, waiting to be forgotten
            if self._idle(conn):
                conn.force_close()
            else:
                busy += 1
        return busy

    async def wait_closed(self, server, timeout: float, every: float = 0.02) -> int:
        """Until no connection is busy (idle ones closed as they turn idle), at most
        `timeout` seconds; returns how many are still busy (0: all done)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (busy := self.close_idle(server)) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(every)
        return busy


class Listener:
    def __init__(self, runner: web.AppRunner, connections: Connections, shutdown_timeout: float):
        self.runner, self.connections, self.shutdown_timeout = runner, connections, shutdown_timeout


async def listen(app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                 shutdown_timeout: float = 30.0, access_log: bool = False, metrics=None,
                 sock: socket.socket | None = None) -> Listener:
    """`access_log`: one line per request (storage/s3/access_log.py), its bytes counted in `metrics`."""
    connections = Connections()
    app.on_response_prepare.append(connections.on_prepare)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=_CUT_OFF,
                           access_log=logging.getLogger("pocket.access") if access_log else None,
                           access_log_class=access_logs.logger_class(metrics))
    await runner.setup()
    if sock is not None:
        site = web.SockSite(runner, sock, ssl_context=ssl_context, backlog=1024)
    else:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True, backlog=1024)
    await site.start()
    gc_tuning.tune()
    return Listener(runner, connections, shutdown_timeout)


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
    connections = listener.connections
    connections.draining = True
    if drain_delay:
        log.info("shutting down: readiness is false; closing the listener in %.1fs", drain_delay)
        await asyncio.sleep(drain_delay)
    runner = listener.runner
    for site in list(runner.sites):
        await site.stop()
    busy = connections.close_idle(runner.server)
    log.info("shutting down: listener closed; finishing %d requests in flight (at most %.0fs)",
             busy, listener.shutdown_timeout)
    if await connections.wait_closed(runner.server, listener.shutdown_timeout):
        log.warning("shutting down: requests still running after gateway.shutdown_timeout = %.0fs are cut off",
                    listener.shutdown_timeout)
    await runner.cleanup()
    log.info("shutdown complete")
