"""Children of `pocket up` die with it, even when it is SIGKILLed (OOM killer, `kill -9`).

On a normal stop `up` terminates its children itself; a parent killed outright runs no
code, and its node processes would keep serving disks nobody answers for (and hold their
ports, so the next `pocket up` cannot start). Linux's PR_SET_PDEATHSIG has the kernel send
the child SIGTERM (a clean drain) the moment its parent dies. Elsewhere it is a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """`preexec_fn` of a child: SIGTERM when `parent` dies. Runs between fork and exec."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:   # it died before the request took effect: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)


def lifeline() -> dict:
    """Popen keyword arguments tying the child to this process."""
    parent = os.getpid()
    return {"preexec_fn": lambda: die_with_parent(parent)}
