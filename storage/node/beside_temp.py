"""Temp files of archives written beside a disk's owner, and who removes a dead writer's.

Processes other than a disk's owner write archive files into its folder: gateway workers
(owned_disk.py), a node's sibling processes (processes.py) and a one-shot `pocket repair`
(tools/cluster.py), each through a temp file in tmp/ renamed into place. One killed midway
(SIGKILL, an OOM kill) left its temp file until the owner's scrub dropped it as an hour
stale, or the owner restarted: a repair killed and done again left the disk holding junk
that `pocket scrub` and the crash tests saw.

So such a writer holds an flock on its temp file until it is published or removed, and
whoever attaches to the folder next (a one-shot command, a restarted worker) or the owner's
scrub removes every one whose lock nobody holds: its writer is gone, and a temp file is
nobody else's (packs and the index never name one). The file is created and locked under
another name and renamed to PREFIX only then, so a sweeper never finds a live writer's file
unlocked.
"""
from __future__ import annotations

import fcntl
import os
import uuid

from .files import unlink_quietly

PREFIX = "beside-"


def create(tmp_folder: str, name: str) -> tuple[str, int]:
    """A new temp file for archive `name`, locked: (its path, the fd holding the lock)."""
    token = uuid.uuid4().hex
    new = os.path.join(tmp_folder, f"new-{name}.{token}")
    fd = os.open(new, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)    # a file just made: nobody else holds it
        path = os.path.join(tmp_folder, f"{PREFIX}{name}.{token}")
        os.rename(new, path)
    except BaseException:
        os.close(fd)
        unlink_quietly(new)
        raise
    return path, fd


def sweep_dead(tmp_folder: str) -> int:
    """Remove the temp files of writers that are gone; how many."""
    removed = 0
    try:
        names = [n for n in os.listdir(tmp_folder) if n.startswith(PREFIX)]
    except FileNotFoundError:
        return 0
    for n in names:
        path = os.path.join(tmp_folder, n)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue            # published or removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue            # its writer still writes
        finally:
            os.close(fd)
        try:
            os.unlink(path)     # by name: one published meanwhile is no longer here
            removed += 1
        except FileNotFoundError:
            pass
    return removed
