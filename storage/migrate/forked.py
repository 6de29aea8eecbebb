"""Forked worker processes of a one-shot migrate command, and the pipes they talk through.

`pocket migrate copy` (workers.py) and `verify` (verify_workers.py) both fork workers
before opening anything, so no thread, socket or LMDB handle crosses the fork. A worker
waits on its "go" pipe: a JSON line starts it with what the parent prepared, the pipe's end
tells it to leave unused. It reports through another pipe, a JSON line per progress step
and its report last, read by a thread in the parent. It dies with the parent (SIGKILL
included): a worker holds no state a clean drain would save.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading

from ..lifeline import die_with_parent



def cores() -> int:
    """How many workers a command forks at most: one per core, four at most."""
    return max(1, min(4, os.cpu_count() or 1))


class Child:
    """A forked worker: the pipe it is started through and the pipe it reports through.
    `what`, `on_failure` and `on_loss` say in its messages what a worker of this command
    is, what happens to its share when it fails, and what to do when it ended unheard."""

    def __init__(self, pid: int, fd: int, go: int, what: str, on_loss: str):
        self.pid = pid
        self.latest: dict = {}
        self.report: dict | None = None
        self.on_line = None               # called (in the reader thread) after each line
        self._go: int | None = go
        self.started = False
        self.what, self.on_loss = what, on_loss
        self._reader = threading.Thread(target=self._read, args=(fd,), daemon=True)

    @classmethod
    def fork(cls, work, what: str, on_failure: str, on_loss: str) -> "Child":
        """`work(out, go)` runs in the child once `start(go)` is called; `stop` instead ends it."""
        r, w = os.pipe()
        go_r, go_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:                      # the child: work, report, leave without running the parent's exit code
            os.close(r)
            os.close(go_w)
            code = 1
            die_with_parent(parent, signal.SIGKILL)
            try:
                with os.fdopen(go_r) as f:
                    line = f.readline()
                if not line:              # not wanted
                    code = 0
                    return
                out = Pipe(os.fdopen(w, "w", buffering=1))
                out.send({"report": work(out, json.loads(line))})
                code = 0
            except BaseException as e:
                # the command's own logger: "copy worker" logs as pocket.migrate.copy
                logging.getLogger(f"pocket.migrate.{what.split()[0]}").exception(
                    "%s %d failed; %s", what, os.getpid(), on_failure)
                try:
                    out.send({"report": {"error": f"worker {os.getpid()}: {e!r}"[:500]}})
                except Exception:
                    pass
            finally:
                os._exit(code)
        os.close(w)
        os.close(go_r)
        child = cls(pid, r, go_w, what, on_loss)
        child._reader.start()
        return child

    def start(self, go: dict) -> None:
        with os.fdopen(self._go, "w") as f:
            f.write(json.dumps(go) + "\n")
        self._go, self.started = None, True

    def release(self) -> None:
        """Tell a child that was not started to leave (it does at its pipe's end)."""
        if self._go is not None:
            os.close(self._go)
            self._go = None

    def stop(self) -> None:
        """Release a child not started and reap it; a started one is reaped by `wait`."""
        if self.started:
            return
        self.release()
        os.waitpid(self.pid, 0)
        self._reader.join()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd) as f:
            for line in f:
                msg = json.loads(line)
                if "progress" in msg:
                    self.latest = msg["progress"]
                else:
                    self.report = msg["report"]
                if self.on_line is not None:
                    try:
                        self.on_line()
                    except RuntimeError:      # the parent's loop is closed: it waits no more
                        pass

    def wait(self) -> dict:
        _, status = os.waitpid(self.pid, 0)
        self._reader.join()
        if self.report is None:
            code = os.waitstatus_to_exitcode(status)
            return {"error": f"worker {self.pid} ended ({code}) without a report; {self.on_loss}"}
        return self.report


class Pipe:
    def __init__(self, f):
        self.f = f

    def send(self, msg: dict) -> None:
        self.f.write(json.dumps(msg, default=str) + "\n")

    def progress(self, tally) -> None:
        """A copy's tally (tally.py) so far."""
        self.send({"progress": tally.as_dict() | {"total_bytes": tally.total_bytes}})
