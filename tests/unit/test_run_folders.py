"""Run folders (storage/run_folders.py) outlive a SIGKILLed master only until the next start.

Real processes: a master made with `make` that forks a child and is then killed with
SIGKILL, as an OOM kill or `kill -9` would. Its folder must stay while the child (which
inherited the lock) still runs, and go at the next `make` once every holder is gone; a
live master's folder and a folder still being set up are never touched.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from storage import run_folders

PREFIX = "pocket-test-run-"

MASTER = textwrap.dedent("""
    import os, sys, time
    from storage import run_folders
    path, fd = run_folders.make(sys.argv[1])
    child = os.fork()
    if child == 0:
        time.sleep(600)     # a worker: it holds the lock it inherited
        os._exit(0)
    print(path, child, flush=True)
    time.sleep(600)
""")


def _master(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", MASTER, PREFIX], env=env, stdout=subprocess.PIPE, text=True)
    path, child = proc.stdout.readline().split()
    return proc, path, int(child)


def _gone(pid: int, timeout: float = 10.0) -> None:
    """Exited (a zombie waiting for its reaper counts: its files are closed by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still runs")


def test_a_killed_masters_folder_goes_once_its_children_are_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    proc, dead, child = _master(tmp_path)
    live, live_path, live_child = _master(tmp_path)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert os.path.isdir(dead)
        assert run_folders.sweep(PREFIX) == []      # its child still holds the lock
        assert os.path.isdir(dead)
        os.kill(child, signal.SIGKILL)
        _gone(child)
        setting_up = tmp_path / (PREFIX + "setting-up")    # a folder without its LOCK yet
        setting_up.mkdir()
        mine, fd = run_folders.make(PREFIX)
        try:
            assert not os.path.exists(dead), "the killed master's folder was left behind"
            assert os.path.isdir(live_path), "a running master's folder was removed"
            assert setting_up.is_dir(), "a folder still being set up was removed"
            assert run_folders.sweep(PREFIX) == []      # our own folder is held too
            assert os.path.isdir(mine)
        finally:
            run_folders.remove(mine, fd)
        assert not os.path.exists(mine)
    finally:
        for pid in (live.pid, live_child, child, proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        live.wait(10)
