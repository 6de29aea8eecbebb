"""Several worker processes behind one S3 port, so a server's every core does Python work.

One Python process runs its request handling (SigV4, XML, header parsing, the event loop
itself) on one core; `gateway.workers` forks that many processes serving one port.

Why one listening socket inherited by every worker, not SO_REUSEPORT:

- A connection the kernel queued for a worker that then dies stays in the shared backlog
  and another worker accepts it; with SO_REUSEPORT each worker has a backlog of its own,
  and what was queued in a dead one's is reset.
- It is the systemd path unchanged: a socket passed in as fd 3 (serving.py) is simply
  the one the workers inherit, and it outlives a restart of the whole gateway too.
- No other process can bind the port beside ours, as SO_REUSEPORT would let any process
  of the same user do.

The master here only forks, forwards signals and restarts: it never opens the index,
a disk or an event loop, so forking from it is safe. SIGTERM/SIGINT go to every worker,
which drains as one gateway does (serving.py), and the master exits once all have;
SIGHUP is forwarded (certificate and log file reload). A worker that dies otherwise is
logged with its exit status or signal and started again; one that keeps dying right
after its start stops the whole gateway instead of looping. Each worker dies with the
master (PR_SET_PDEATHSIG), so killing the master never leaves workers serving.

Processes that must be one per gateway (the owners of in-process disks: `helpers`) are
started first and stopped last, after every worker has drained. Workers start only once
every helper serves: a disk owner refuses requests signed before its own start (node/
auth.py), and the workers' first heartbeats, queued on its socket while it opened the
disks, were refused with 403, so each worker began serving with every disk marked down.
A node of several processes (storage/node/processes.py) is supervised the same way
(`what="node"`).
"""
from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from .lifeline import die_with_parent

log = logging.getLogger("pocket.workers")

WORKER_ENV = "POCKET_WORKER"      # which worker a process is ("0", "1", ...), for logs and lease holders
READY_ENV = "POCKET_WORKER_READY_FD"   # where a child says it serves (report_serving)
_QUICK_DEATH = 10.0               # a worker dying sooner than this after its start ...
_QUICK_DEATHS = 5                 # ... this many times in a row stops the gateway


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The one socket every worker accepts on; bound before any worker starts, so
    connections made while workers start (or restart) wait instead of being refused."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 5.0
    while True:     # the workers of a gateway killed a moment ago may still hold it
        try:
            sock.bind((host.strip("[]"), port))
            break
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                sock.close()
                raise
            time.sleep(0.1)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def report_serving() -> None:
    """Tell the master this process serves now (after its listener started); a child that
    dies before it ever did could not start, and restarting it would only fail again."""
    fd = os.environ.pop(READY_ENV, None)
    if fd is not None:
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:
            pass


def worker_number() -> int | None:
    """This process's worker number, or None outside a multi-worker gateway."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None else None


@dataclass
class _Child:
    name: str
    run: Callable[[bool], int]    # run(first_start) -> exit code; in the forked child
    pid: int = 0
    started: float = 0.0
    starts: int = 0
    quick_deaths: int = 0
    ready_fd: int = -1            # the master's end of the pipe the child reports "serving" on
    served: bool = False          # reported serving at least once
    env: dict = field(default_factory=dict)


class Supervisor:
    """Forks `workers` (and `helpers`), restarts them when they die, stops them on a signal."""

    def __init__(self, workers: list[tuple[str, Callable[[bool], int], dict]],
                 helpers: list[tuple[str, Callable[[bool], int], dict]] = (), what: str = "gateway"):
        self.workers = [_Child(name, run, env=env) for name, run, env in workers]
        self.helpers = [_Child(name, run, env=env) for name, run, env in helpers]
        self.stopping = False
        self.exit_code = 0
        self.what = what      # what the log says is stopped when a child cannot stay up

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or a worker that cannot stay up); the exit code."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        for child in self.helpers:
            self._start(child)
        if self._helpers_serve():
            for child in self.workers:
                self._start(child)
        while any(c.pid for c in self.workers):
            self._reap()
        self._stop_helpers()
        return self.exit_code

    # signals ------------------------------------------------------------------------------
    def _on_stop(self, signum, _frame) -> None:
        if not self.stopping:
            log.info("got %s: every worker drains and stops", signal.Signals(signum).name)
        self.stopping = True
        self._send(self.workers, signal.SIGTERM)

    def _on_reload(self, _signum, _frame) -> None:
        self._send(self.workers + self.helpers, signal.SIGHUP)

    @staticmethod
    def _send(children: list[_Child], sig: int) -> None:
        for child in children:
            if child.pid:
                try:
                    os.kill(child.pid, sig)
                except ProcessLookupError:
                    pass

    def _helpers_serve(self) -> bool:
        """Wait until every helper reported serving; False if one died first (its traceback
        is in the log: it is not restarted) or a signal stopped the supervisor meanwhile."""
        for child in self.helpers:
            while not child.served and not self.stopping:
                try:
                    ready, _, _ = select.select([child.ready_fd], [], [], 0.5)
                except InterruptedError:
                    continue
                if ready:
                    said = os.read(child.ready_fd, 1)
                    child.served = said == b"1"
                    if said == b"1":
                        continue
                pid, status = os.waitpid(child.pid, os.WNOHANG)
                if pid:
                    child.pid = 0
                    log.error("%s %s before it ever served; stopping the %s: see why above", child.name,
                              _describe(status), self.what)
                    self.exit_code = 1
                    self.stopping = True
                    return False
        return not self.stopping

    # children -----------------------------------------------------------------------------
    def _start(self, child: _Child) -> None:
        master = os.getpid()
        first = child.starts == 0
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:       # the worker: never returns into the master's code
            code = 1
            try:
                os.close(ready_r)
                os.environ[READY_ENV] = str(ready_w)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                # Ctrl-C reaches the whole process group: the disks' owners wait for the master
                signal.signal(signal.SIGINT, signal.SIG_IGN if child in self.helpers else signal.SIG_DFL)
                # until its loop takes SIGHUP over (serving.py), a reload must not kill a worker
                # still starting: one that dies before serving stops the whole gateway
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                die_with_parent(master, signal.SIGKILL)   # a master SIGKILLed takes its workers along
                os.environ.update(child.env)
                code = child.run(first) or 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()    # to stderr, as a process of its own would: the reason it cannot start
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(ready_w)
        os.set_blocking(ready_r, False)
        child.pid, child.started, child.ready_fd = pid, time.monotonic(), ready_r
        child.starts += 1

    @staticmethod
    def _served(child: _Child) -> bool:
        """Whether the child reported serving before it died (closes the pipe)."""
        try:
            said = os.read(child.ready_fd, 1) == b"1"
        except BlockingIOError:
            said = False
        os.close(child.ready_fd)
        child.ready_fd = -1
        child.served = child.served or said
        return said

    def _reap(self) -> None:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            for child in self.workers + self.helpers:
                child.pid = 0
            return
        child = next((c for c in self.workers + self.helpers if c.pid == pid), None)
        if child is None:
            return
        child.pid = 0
        how = _describe(status)
        served = self._served(child)
        if self.stopping and child in self.workers:
            if os.waitstatus_to_exitcode(status) != 0:
                log.warning("%s stopped: %s", child.name, how)
            return
        lived = time.monotonic() - child.started
        child.quick_deaths = child.quick_deaths + 1 if lived < _QUICK_DEATH else 0
        if child.quick_deaths >= _QUICK_DEATHS or not (served or child.served):
            # never came up (a bad config, an index without its schema), or keeps dying at start
            if served or child.served:
                log.error("%s %s %d times within %.0fs of starting; stopping the %s instead of restarting "
                          "it again: see its log above", child.name, how, child.quick_deaths, _QUICK_DEATH, self.what)
            else:
                log.error("%s %s before it ever served; stopping the %s: see why above", child.name, how, self.what)
            self.exit_code = 1
            self._on_stop(signal.SIGTERM, None)
            return
        log.error("%s %s after %.0fs; starting it again (what it had acknowledged is on disk and in the "
                  "index: requests it was still handling failed and are for the clients to retry)",
                  child.name, how, lived)
        if child.quick_deaths:     # e.g. a disk lock still held by a process that is dying too
            time.sleep(0.2 * 2 ** child.quick_deaths)
        if not self.stopping or child in self.helpers:
            self._start(child)

    def _stop_helpers(self) -> None:
        """The disks' owners go last: draining workers still write to them."""
        self._send(self.helpers, signal.SIGTERM)
        for child in self.helpers:
            while child.pid:
                try:
                    pid, status = os.waitpid(child.pid, 0)
                except ChildProcessError:
                    break
                if pid == child.pid:
                    child.pid = 0
            if child.ready_fd >= 0:
                self._served(child)


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
