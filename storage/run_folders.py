"""Private run folders under the temp dir that a SIGKILLed master does not leave behind.

A gateway's master keeps its workers' shared counters in one (storage/metrics.py), a
multi-process node its siblings' sockets and counters. A master removes its folder when it
exits, but one killed with SIGKILL (an OOM kill, `kill -9`, a test's crash probe) cannot,
and the folders piled up: about forty after one test-suite run, each with its counter files.

Each folder holds a lock file the master keeps locked (flock) for its whole life; its
children inherit the open file and so the lock, which the kernel drops only when the last of
them exits. Making a folder first sweeps away every folder of the same kind whose lock nobody
holds. A lock, not a pid in the name: a pid can be reused, and processes in other pid
namespaces that share /tmp (containers) see other pids, whereas an flock is held or not for
everyone on the host.

The lock file is created and locked under a temporary name and only then renamed to
LOCK, so a sweeper never finds an unlocked LOCK in a folder that is still being set up;
folders without a LOCK (being set up, or made before this module) are left alone.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile

log = logging.getLogger("pocket.run")

LOCK = ".lock"


def make(prefix: str) -> tuple[str, int]:
    """A new folder (mode 0700) named prefix + random, and the fd holding its lock: keep
    the fd open as long as the folder is in use (closing it makes the folder sweepable)."""
    sweep(prefix)
    path = tempfile.mkdtemp(prefix=prefix)
    setting_up = os.path.join(path, LOCK + ".new")
    fd = os.open(setting_up, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(setting_up, os.path.join(path, LOCK))
    return path, fd


def remove(path: str, fd: int) -> None:
    """What the master does when it exits normally."""
    shutil.rmtree(path, ignore_errors=True)
    os.close(fd)


def sweep(prefix: str) -> list[str]:
    """Remove every folder named prefix* in the temp dir whose lock no process holds; the
    paths removed. Folders of other users, and ones this process cannot read, are skipped."""
    root = tempfile.gettempdir()
    removed = []
    try:
        names = [n for n in os.listdir(root) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(root, name)
        try:
            if os.lstat(path).st_uid != os.getuid():
                continue
            fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue     # not a folder of ours, gone meanwhile, or still being set up
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue     # its master (or one of its children) still runs
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d run folders of processes that are gone (%s*)", len(removed),
                 os.path.join(root, prefix))
    return removed
