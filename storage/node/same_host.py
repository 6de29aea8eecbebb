"""Whether a node's disk folder is one this process can read itself: same host, same folder.

Why: a gateway beside its nodes (`pocket up --nodes 6`, a node process per disk on one
server) paid a loopback HTTP request per fragment read, aiohttp on both ends, ~2.5x the
CPU of the embedded shape for a small GET (bench/RESULTS.md, Session 11). HDFS's
short-circuit reads are the precedent: a client on the DataNode's host reads block files
itself. Here the gateway reads archive files and pack records of such a disk directly
(owned_disk.py, pack_mirror.py) and sends everything else to the node.

The gateway's config names every disk's path, but on another host that path may exist
too (`/srv/disk1` on both), and 127.0.0.1 proves nothing behind a proxy or in a
container. So the node says where its disk is, in its health answer (DiskStore.usage):
the kernel's boot id (one per running kernel: another host, or the same host rebooted,
differs), its user id (files it writes are readable by the same user), the release's
formats (a reader that knows them) and the disk folder's device and inode. The gateway
stats the path its config gives: the same boot id and the same (device, inode) are the
same directory, whatever the path or mount namespace it was reached by.
"""
from __future__ import annotations

import functools
import os

from .. import layout
from .auth import LINK_VERSION
from .packformat import PACK_VERSION

RELEASE = f"link{LINK_VERSION}/archive{layout.FORMAT_VERSION}/pack{PACK_VERSION}"


@functools.cache
def host_id() -> str:
    """The running kernel's boot id; empty where there is none (then nothing matches)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def identity(root: str) -> dict:
    """What a node says about one of its disk folders (the `where` of its health answer)."""
    st = os.stat(root)
    return {"host": host_id(), "uid": os.getuid(), "release": RELEASE, "dev": st.st_dev, "ino": st.st_ino}


def matches(theirs: dict | None, root: str) -> bool:
    """Whether `theirs` (a node's `identity`) is the folder this process sees at `root`."""
    if not theirs or not host_id():
        return False
    try:
        mine = identity(root)
    except OSError:
        return False
    return all(theirs.get(k) == mine[k] for k in ("host", "uid", "release", "dev", "ino"))
