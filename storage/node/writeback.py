"""A large file sent to the disk while it is written, with one device flush at its end.

Left to its final fsync, a 64 MiB archive went to the disk all at once, and concurrent
uploads queued their flushes together (put-64m c1 149 MiB/s). Flushed every 8 MiB
(fdatasync) while it streamed in, the disk was busy during the upload (199 MiB/s), but
each fdatasync is also a flush of the device's cache, which on a virtual disk is a sync
of the host's file: a 64 MiB PUT under ec:4+2 paid 18 of them, 6 would do.

So each window of the file is handed to the disk as it fills (sync_file_range WRITE:
writeback starts, nothing waits), and when the next one fills, the previous one is waited
for (its pages were written by then, or the disk is the bottleneck and the writer should
wait) and dropped from the page cache (files.drop_cached says why). Durability does not
change: nothing is acknowledged before the archive's final fsync, which flushes every
byte; the file is in tmp/ until then. Where sync_file_range is missing (not Linux), each
window is fdatasync'd as before.
"""
from __future__ import annotations

import ctypes
import errno
import os

from ..lifeline import libc
from .files import drop_cached

WINDOW = 8 << 20
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
    """The windows of one file being written (by one thread at a time)."""

    def __init__(self, fd: int, window: int = WINDOW):
        self.fd, self.window = fd, window
        self.size = self.started = self.cleaned = 0   # written; handed to the disk; out of the cache

    def wrote(self, n: int) -> None:
        """`n` more bytes were appended: start the window they fill, and finish the one before."""
        global _sync_file_range
        self.size += n
        if self.size - self.started < self.window:
            return
        if _sync_file_range is not None:
            try:
                if self.started > self.cleaned:
                    self._range(self.cleaned, self.started, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
                    os.posix_fadvise(self.fd, self.cleaned, self.started - self.cleaned, _DONTNEED)
                    self.cleaned = self.started
                self._range(self.started, self.size, _WRITE)
                self.started = self.size
                return
            except OSError as e:
                if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ESPIPE):
                    raise
                _sync_file_range = None   # this filesystem cannot: flush windows instead, from now on
        os.fdatasync(self.fd)
        drop_cached(self.fd)
        self.started = self.cleaned = self.size

    def _range(self, start: int, end: int, flags: int) -> None:
        if _sync_file_range(self.fd, start, end - start, flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
