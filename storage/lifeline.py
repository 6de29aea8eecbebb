"""A child process dies with its parent, even when the parent is SIGKILLed (OOM killer, `kill -9`).

A parent killed outright runs no code, so it cannot stop its children: node processes of
`pocket up` would keep serving disks nobody answers for (and hold their ports), and the
workers of `pocket migrate copy` would keep copying for a command that is gone. Linux's
PR_SET_PDEATHSIG has the kernel send the child a signal the moment its parent dies; each
caller picks the signal (SIGTERM for a clean drain, SIGKILL where nothing needs draining).
Elsewhere this is a no-op and children finish on their own.
"""
from __future__ import annotations

import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Arm `sig` for when `parent` dies. Call in the child: after fork (or as `preexec_fn`)."""
    try:
        libc().prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:   # it died before the request took effect: no signal will come
        os.kill(os.getpid(), sig)


def lifeline(sig: int = signal.SIGTERM) -> dict:
    """Popen keyword arguments tying the child to this process."""
    parent = os.getpid()
    return {"preexec_fn": lambda: die_with_parent(parent, sig)}


def libc():
    """glibc, for what `os` does not wrap. By its soname first: `find_library` runs `ldconfig
    -p` in a subprocess (~2.5 ms of CPU a call, and ctypes.util ~10 ms to import), once in
    every forked copy worker."""
    import ctypes
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        import ctypes.util
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
