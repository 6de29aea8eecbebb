"""Which process owns a disk folder: an exclusive flock held while a DiskStore is open.

Why: two processes appending to one disk's packs would interleave records, and the
one-shot commands (`pocket scrub`, `repair`) must tell a disk nobody runs (open it
fully: recover torn tails, delete packed orphans) from one a node or gateway owns
(attach read-only). The kernel drops the lock when its process dies, SIGKILL included,
so a crash never leaves a disk locked.
"""
from __future__ import annotations

import fcntl
import os

LOCK_FILE = "pocket-disk.lock"


class DiskInUse(RuntimeError):
    """Another process (a node, a gateway, a one-shot command) has this disk open."""


def own(root: str, disk_id: str) -> int:
    """Lock the folder for this process; returns the descriptor to close when done."""
    fd = os.open(os.path.join(root, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DiskInUse(f"disk {disk_id} at {root} is in use by another process (a node, gateway or "
                        "pocket command); stop it first") from None
    return fd


def held(root: str) -> bool:
    """Whether some process holds the folder's lock now, without taking it: a test lock
    would make an owner starting at that instant fail with DiskInUse, so the kernel's table
    of locks (/proc/locks) is read instead. True where that table cannot be read."""
    try:
        st = os.stat(os.path.join(root, LOCK_FILE))
        with open("/proc/locks") as f:
            table = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    me = f" {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    return any(" FLOCK " in line and me in line for line in table.splitlines())
