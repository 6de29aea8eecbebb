"""A child tied with storage.lifeline dies when its parent is SIGKILLed (Linux only).

Real processes: a parent Python process starts a long-sleeping child (through Popen's
`lifeline()` as `pocket up` does, and through a bare fork + `die_with_parent(SIGKILL)` as
`pocket migrate copy`'s workers do), prints the child's pid, and is then killed outright.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

POPEN_PARENT = """
import subprocess, sys, time
from storage.lifeline import lifeline
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], **lifeline())
print(child.pid, flush=True)
time.sleep(120)
"""

FORK_PARENT = """
import os, signal, sys, time
from storage.lifeline import die_with_parent
parent = os.getpid()
pid = os.fork()
if pid == 0:
    die_with_parent(parent, signal.SIGKILL)
    time.sleep(120)
    os._exit(0)
print(pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("script", [POPEN_PARENT, FORK_PARENT], ids=["popen-sigterm", "fork-sigkill"])
def test_child_dies_when_parent_is_sigkilled(script):
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), f"child {child} outlived its SIGKILLed parent"
    finally:
        parent.kill()
        try:
            os.kill(child, signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError):
            pass
