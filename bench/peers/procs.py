"""Starting, waiting for and stopping the server processes of a run.

Each server starts in a session of its own, so stopping its process group also stops
the workers it forked (Swift's servers, SeaweedFS's parts) and nothing outlives the run."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request


def spawn(args: list[str], log_path: str, **kw) -> subprocess.Popen:
    """Start `args` with stdout and stderr appended to `log_path`, in a new session."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)


def stop(proc: subprocess.Popen, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """Ask the process group to stop; kill what is left after `timeout` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def tail(path: str, chars: int = 2000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return "(no log)"


def wait_http(url: str, proc: subprocess.Popen, log_path: str, timeout: float = 90.0) -> None:
    """Until `url` answers HTTP at all (a 403 to an anonymous request is an answer); fails
    with the log's end if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{os.path.basename(proc.args[0])} exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s:\n{tail(log_path)}")


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (Linux /proc)."""
    found = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            found = [int(p) for p in f.read().split()]
    except OSError:
        pass
    return found


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []
