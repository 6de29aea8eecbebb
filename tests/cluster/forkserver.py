"""Test processes forked from a warm interpreter instead of exec'd from scratch.

Every node, gateway and one-shot `pocket` command a probe starts is `python -m cli ...`.
Exec'd, each paid ~0.2 s of CPU to import aiohttp, click and storage before doing
anything: the largest single cost of the suite on two cores (about a thousand starts).
A fork server imports them once; each start is then a fork (a few ms) running the same
`cli` entry point, `runpy` as `-m cli` would, in a process of its own with its own
arguments, environment, folder and standard streams, and exit status as exec'd.

What a fork cannot give is started the old way (`spawn` falls back to exec): an
environment that changes how the interpreter itself starts (LD_PRELOAD shims, PYTHON*
settings), or an inherited listening socket. Environment variables a module reads when
imported would be the server's, so each distinct environment (apart from the variables
in `_RUNTIME_ENV`, read when a command runs) gets a fork server of its own.
"""
from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid

from storage.lifeline import die_with_parent, lifeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What the servers import once: every process kind the probes start (node, gateway with its
# workers and in-process disks, one-shot tools).
_PRELOAD = ("cli.main", "cli.serve", "storage.gateway", "storage.node.server", "storage.node.daemons",
            "storage.serving", "storage.tools.cluster")
# Read by the processes when they run, not when imported: they may differ from the server's.
_RUNTIME_ENV = ("PYTEST_", "POCKET_GATEWAY_LISTEN", "PYTHONUNBUFFERED")
# Read by the interpreter or the dynamic linker at exec: only an exec honours them.
_EXEC_ENV = ("LD_", "PYTHON")
_MAX_SERVERS = 3


class Forked:
    """The part of subprocess.Popen the probes use, for a process the fork server started:
    its exit status comes over the connection it was asked on."""

    def __init__(self, conn: socket.socket, pid: int, args: list[str]):
        self._conn, self.pid, self.args, self.returncode = conn, pid, args, None

    def _status(self, timeout: float | None) -> int | None:
        if self.returncode is None and select.select([self._conn], [], [], timeout)[0]:
            data = self._conn.recv(64)
            self._conn.close()
            self.returncode = int(data) if data else -signal.SIGKILL   # server gone: it took the process along
        return self.returncode

    def poll(self) -> int | None:
        return self._status(0)

    def wait(self, timeout: float | None = None) -> int:
        if self._status(timeout) is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:   # as Popen: never signal a pid that may have been reused
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass   # as Popen: it exited just now (the server reaped it, its status is on the way)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Server:
    """One fork server process, listening on an abstract Unix socket (no file to clean up
    after a server killed with its test worker)."""

    def __init__(self, env: dict[str, str]):
        self.path = f"\0pocket-forkserver-{os.getpid()}-{uuid.uuid4().hex}"
        self.children: list[Forked] = []
        ready_r, ready_w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", __name__, self.path[1:], str(ready_w)],
                                     cwd=REPO, env={**env, "PYTHONUNBUFFERED": "1"}, pass_fds=[ready_w],
                                     **lifeline(signal.SIGKILL))   # no server outlives its test worker
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            self.ok = ready.read() == b"ok"   # not ok: a preload failed or left a thread; exec instead

    def start(self, args: list[str], env: dict[str, str], cwd: str, fds: tuple[int, int, int]) -> Forked:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.path)
        request = json.dumps({"args": args, "env": env, "cwd": cwd}).encode()
        conn.sendmsg([len(request).to_bytes(4, "big") + request],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        pid = int.from_bytes(_recv_exact(conn, 4), "big")
        proc = Forked(conn, pid, [sys.executable, "-m", "cli", *args])
        self.children = [c for c in self.children if c.poll() is None] + [proc]
        return proc

    def busy(self) -> bool:
        """Any of its processes still running (which would die with it)."""
        return any(c.poll() is None for c in self.children)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


_servers: dict[tuple, _Server] = {}


def _key(env: dict[str, str]) -> tuple | None:
    """Which fork server may start a process with `env` (None: none; exec it)."""
    base = os.environ
    if any(k.startswith(_EXEC_ENV) and not k.startswith(_RUNTIME_ENV) and env.get(k) != base.get(k)
           for k in {*env, *base}):
        return None
    return tuple(sorted((k, v) for k, v in env.items() if not k.startswith(_RUNTIME_ENV)))


def spawn(args: list[str], env: dict[str, str], stdout: int, stderr: int, stdin: int | None = None):
    """`python -m cli *args` in REPO with `env`: a `Forked` process, or a Popen where a fork
    cannot honour the environment (or the server could not start)."""
    key = _key(env)
    server = _servers.pop(key, None) if key is not None else None
    # A server dies with the thread that started it (PR_SET_PDEATHSIG): only the main one does.
    if key is not None and (server is not None or threading.current_thread() is threading.main_thread()):
        if server is None:
            idle = [k for k, s in _servers.items() if not s.busy()]   # least recently used first
            if len(_servers) >= _MAX_SERVERS and idle:
                _servers.pop(idle[0]).close()
            server = _Server(env)
        _servers[key] = server
    if server is None or not server.ok:
        return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, stdout=stdout, stderr=stderr,
                                stdin=stdin, env=env)
    with open(os.devnull, "rb") as null:
        return server.start(args, env, REPO, (stdin if stdin is not None else null.fileno(), stdout, stderr))


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`subprocess.run([python, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True,
    timeout=timeout, env=env)`, the process started by `spawn`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = spawn(args, dict(os.environ if env is None else env), out.fileno(), err.fileno())
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))


def close_all() -> None:
    while _servers:
        _servers.popitem()[1].close()


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("fork server closed the connection")
        data += chunk
    return data


# The server ---------------------------------------------------------------------------------

def _serve(path: str, ready_fd: int) -> dict:
    """Preload, then fork a child per request; in the child, return the request to run.
    The parent reaps its children and writes each one's exit status to its connection."""
    import gc
    import importlib
    try:
        for name in _PRELOAD:
            importlib.import_module(name)
        ok = threading.active_count() == 1   # forking a process with threads is not safe
        # Out of the collector's reach: a child's first collections otherwise walk (and
        # write to) every preloaded object, copying the pages it shares with the server:
        # 0.06-0.08 s of CPU per node start, most of what a fork saves over an exec.
        gc.collect()
        gc.freeze()
    except Exception:
        ok = False
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + path)
    listener.listen(64)
    os.write(ready_fd, b"ok" if ok else b"no")
    os.close(ready_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    waiting: dict[int, socket.socket] = {}
    server_pid = os.getpid()
    while True:
        readable = select.select([listener, wake_r], [], [])[0]
        if wake_r in readable:
            os.read(wake_r, 512)
            while waiting:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                conn = waiting.pop(pid, None)
                if conn is not None:
                    try:
                        conn.sendall(str(os.waitstatus_to_exitcode(status)).encode())
                    except OSError:
                        pass   # the test stopped listening
                    conn.close()
        if listener in readable:
            conn, _ = listener.accept()
            msg, ancdata, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(3 * array.array("i").itemsize))
            msg += _recv_exact(conn, 4 + int.from_bytes(msg[:4], "big") - len(msg))
            msg = msg[4:]
            fds = array.array("i")
            fds.frombytes(ancdata[0][2])
            pid = os.fork()
            if pid == 0:
                die_with_parent(server_pid, signal.SIGKILL)   # no process outlives the tests' server
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                for sock in (listener, conn, *waiting.values()):
                    sock.close()
                os.close(wake_r)
                os.close(wake_w)
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                    os.close(fd)
                return json.loads(msg)
            for fd in fds:
                os.close(fd)
            waiting[pid] = conn
            try:
                conn.sendall(pid.to_bytes(4, "big"))
            except OSError:
                pass


def _become(request: dict) -> None:
    """Run the request as `python -m cli *args` would: its folder, environment and argv.

    A command that exits (as every one does, through click's sys.exit) then leaves as an
    interpreter would up to its teardown: threads joined, atexit handlers run (logging's
    flush among them), standard streams flushed, SystemExit's code as the exit status. The
    teardown itself is skipped: freeing every module a fork inherited wrote to each of
    their pages (~0.02 s of CPU per process, a sixth of a cluster's stop), and nothing in
    it is what a process hands on (its files and sockets close with it). An exception
    other than SystemExit takes the interpreter's own way out, traceback and all."""
    import atexit
    import runpy
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None      # found again from TMPDIR, as a new interpreter would
    sys.argv = ["-m", *request["args"]]
    try:
        runpy.run_module("cli", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code
    threading._shutdown()
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)   # as the interpreter does with sys.exit("message")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit((code or 0) & 0xFF)


if __name__ == "__main__":
    _become(_serve(sys.argv[1], int(sys.argv[2])))
