"""A large file sent to the disk while it is written, with one device flush at its end.

Left to its final fsync, a 64 MiB archive went to the disk all at once, and concurrent
uploads queued their flushes together (put-64m c1 149 MiB/s). Flushed every 8 MiB
(fdatasync) while it streamed in, the disk was busy during the upload (199 MiB/s), but
each fdatasync is also a flush of the device's cache, which on a virtual disk is a sync
of the host's file: a 64 MiB PUT under ec:4+2 paid 18 of them, 6 would do.

So what is written is handed to the disk at once (sync_file_range WRITE: writeback
starts, nothing waits), and once two windows are outstanding the older one is waited for
(written by then, unless the disk is the bottleneck and the writer should wait) and
dropped from the page cache (files.drop_cached says why). The seal's fsync then finds
little left to write: at c1 it took 91-146 ms with 8 MiB windows handed over whole, 30-43
with every MiB handed over at once. Durability does not change: nothing is acknowledged
before the archive's final fsync, which flushes every byte, and the file is in tmp/ until
then. Where sync_file_range is missing (not Linux), each window is fdatasync'd as before.
"""
from __future__ import annotations

import ctypes
import errno
import os

from ..lifeline import libc
from .files import drop_cached

KICK = 1 << 20     # handed to the disk once this much is new (the store writes 1 MiB at a time)
WINDOW = 4 << 20   # left outstanding (in flight or cached) per file: two of these at most
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4   # SYNC_FILE_RANGE_* (linux/fs.h)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None)


def _load():
    try:
        fn = libc().sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load() if _DONTNEED is not None else None



class Writeback:
    """What of one file (written by one thread at a time) went to the disk and left the cache."""

    def __init__(self, fd: int, window: int = WINDOW, kick: int = KICK, keep: int = 0):
        """The first `keep` bytes stay cached until the end: the seal reads an archive's
        header back to check it (archives.check_archive), and once dropped that was a disk
        read queued behind the writes, 15 ms on average (p90 43) of a seal at put-64m-c16."""
        self.fd, self.window, self.kick, self.keep = fd, window, kick, keep
        self.size = self.started = self.cleaned = 0   # written; handed to the disk; out of the cache

    def wrote(self, n: int) -> None:
        """`n` more bytes were appended: hand them to the disk, and once two windows are
        outstanding, wait for the older one and drop it from the cache."""
        global _sync_file_range
        self.size += n
        if _sync_file_range is not None:
            try:
                if self.size - self.started >= self.kick:
                    self._range(self.started, self.size, _WRITE)
                    self.started = self.size
                if self.started - self.cleaned >= 2 * self.window:
                    end = self.started - self.window
                    self._range(self.cleaned, end, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
                    start = max(self.cleaned, self.keep)   # the kernel keeps the page `keep` ends in
                    if end > start:
                        os.posix_fadvise(self.fd, start, end - start, _DONTNEED)
                    self.cleaned = end
                return
            except OSError as e:
                if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ESPIPE):
                    raise
                _sync_file_range = None   # this filesystem cannot: flush windows instead, from now on
        if self.size - self.cleaned >= self.window:
            os.fdatasync(self.fd)
            drop_cached(self.fd)
            self.started = self.cleaned = self.size

    def _range(self, start: int, end: int, flags: int) -> None:
        if _sync_file_range(self.fd, start, end - start, flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
