"""A disk's capacity quota: the bytes Pocket may use on it (`capacity` of a disk entry).

Why: operators share filesystems (a quota per disk keeps Pocket from starving the
neighbours), and a full disk must behave the same whether the filesystem or the quota
ran out, so one test of "disk full" runs everywhere. A write that would pass the
quota fails with ENOSPC before it writes anything, exactly like a full filesystem,
and the callers' cleanup of a refused write is the same in both cases.

Whatever the quota, the last RECORD_RESERVE bytes of the filesystem are kept for
records: archives are refused before the filesystem is completely full, so the
tombstone of a DELETE (which is what frees space) still fits on a full disk.

What counts: archive and record files (including temp files being streamed in) and
pack files. Deletes and tombstones are never refused: they are tiny, and refusing
them on a full disk would keep an operator from freeing space. Space held by dead
records in packs comes back when the compactor removes the pack.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from typing import Callable

RECORD_RESERVE = 256 << 10
# statvfs costs ~40 us here, and a replicated small PUT asked three times (8 % of its
# CPU, cProfile). A free-space figure is reused for up to FREE_TTL seconds, less what
# this disk took since, but only while that leaves more than FREE_MARGIN: closer to full
# (or with neighbours writing fast) every take asks the filesystem, as before.
FREE_TTL = 0.25
FREE_MARGIN = 1 << 30


class Quota:
    """`capacity` = 0: no quota, only the filesystem limits. `packed()` = bytes in pack files."""

    def __init__(self, disk_id: str, root: str, capacity: int, packed: Callable[[], int]):
        self.disk_id = disk_id
        self.root = root
        self.capacity = capacity
        self._packed = packed
        self._held = 0           # file bytes, plus pack appends not yet in a pack
        self._lock = threading.Lock()
        self._free = (-1.0, 0, 0)  # (monotonic time of the statvfs, free bytes then, bytes taken since)

    def start(self, file_bytes: int) -> None:
        """Set what the disk's files already hold (at open)."""
        with self._lock:
            self._held = file_bytes

    def used(self) -> int:
        return self._held + self._packed()

    def free(self) -> int | None:
        """Bytes left under the quota, or None without one."""
        return max(0, self.capacity - self.used()) if self.capacity else None

    def take(self, n: int, what: str, refuse: bool = True) -> None:
        """Count `n` more bytes, or raise ENOSPC (nothing counted) if they do not fit and `refuse`."""
        if refuse:
            free = self._fs_free(n)
            if free - n < RECORD_RESERVE:
                raise OSError(errno.ENOSPC, f"No space left on device: disk {self.disk_id} has {free} bytes "
                                            f"free; the last {RECORD_RESERVE} are kept for tombstones, so "
                                            f"{n} more bytes of {what} do not fit")
        with self._lock:
            if refuse and self.capacity and self._held + self._packed() + n > self.capacity:
                raise OSError(errno.ENOSPC, f"No space left on device: disk {self.disk_id} is at its capacity "
                                            f"quota of {self.capacity} bytes ({self.used()} used) and cannot "
                                            f"take {n} more bytes of {what}; delete data or raise its capacity")
            self._held += n

    def _fs_free(self, n: int) -> int:
        """The filesystem's free bytes before taking `n`: remembered (see FREE_TTL) or asked."""
        now = time.monotonic()
        at, free, since = self._free
        if now - at < FREE_TTL and free - since - n > FREE_MARGIN:
            self._free = (at, free, since + n)   # racing takers may undercount: the margin covers it
            return free - since
        free = shutil.disk_usage(self.root).free
        self._free = (now, free, n)
        return free

    def give_back(self, n: int) -> None:
        with self._lock:
            self._held -= n


def tree_bytes(*folders: str) -> int:
    """Bytes in the files under these folders (what a disk held before this process)."""
    total = 0
    for top in folders:
        for folder, _dirs, files in os.walk(top):
            for name in files:
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                except FileNotFoundError:
                    continue
    return total
