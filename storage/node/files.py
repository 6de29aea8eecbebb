"""The file work under a disk folder, done one durable way.

Nothing is acknowledged before it is on the platter: a new file is written under a
temporary name, fsync'd, renamed into place and its directory fsync'd, so a crash
leaves the whole file or none of it. Archive files (store.py), pack files (packs.py,
pack_compaction.py) and the scrubber's state (disk_scrub.py) all go through here.
"""
from __future__ import annotations

import errno
import os
import re
import uuid
from typing import Iterator


_IOV_MAX = 1024   # buffers one writev may take (Linux's IOV_MAX)


def write_all(fd: int, chunks: list, writeback=None) -> int:
    """Write every chunk (bytes-like), gathered: one writev per batch of buffers, so a
    record's head and payload arrive as two buffers and are never joined first.

    With `writeback` (writeback.py), tell it what was appended: a big archive goes to the
    disk while it streams in, instead of every byte at the final fsync."""
    total = 0
    views = [memoryview(c) for c in chunks if len(c)]
    while views:
        batch = views[:_IOV_MAX]
        written = os.writev(fd, batch)
        total += written
        for n, view in enumerate(batch):   # drop what was written; a short write resumes mid-buffer
            if written < len(view):
                views = [view[written:], *views[n + 1:]]
                break
            written -= len(view)
        else:
            views = views[len(batch):]
    if writeback is not None:
        writeback.wrote(total)
    return total


_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None)   # Linux and the BSDs; elsewhere pages stay cached


def drop_cached(fd: int) -> None:
    """Let the kernel take back the page cache of what `fd` holds, once it is synced (clean
    pages only are dropped, so call it after an fsync).

    An archive file is written once and read seldom (a GET reads k of its n fragments, a
    scrub pass now and then), so its pages only grow the page cache, and each page a
    growing cache takes is memory the kernel touches for the first time. On the team's VM
    (KVM, virtio-balloon) writing 1.5 GiB of files in 1 MiB pieces cost 4-5 s of system
    CPU, 94 % of it copy_folio_from_iter_atomic (perf), and 0.45 s with the pages dropped
    after each flush, which the next writes then reuse; on any machine it keeps write-once
    data from pushing out what is read. Swift's object server does the same after each
    fdatasync (drop_buffer_cache), and MinIO writes large objects with O_DIRECT."""
    if _DONTNEED is not None:
        os.posix_fadvise(fd, 0, 0, _DONTNEED)


_NOWAIT = getattr(os, "RWF_NOWAIT", None)   # Linux 4.14+; elsewhere every read may block


def read_cached(fd: int, length: int, offset: int) -> bytes:
    """`length` bytes at `offset` if the page cache holds them all, else BlockingIOError
    (nothing waited for). A small GET's one read costs a few microseconds from the cache,
    but the thread hop that keeps a slow disk off the event loop cost ~15 % of the
    gateway's CPU per 4 KiB GET (py-spy): a loop tries this first and hops only on a miss."""
    global _NOWAIT
    if _NOWAIT is None:
        raise BlockingIOError(errno.EAGAIN, "reads that never block are not available here")
    buf = bytearray(length)
    try:
        got = os.preadv(fd, [buf], offset, _NOWAIT)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):   # this filesystem cannot: stop asking
            _NOWAIT = None
            raise BlockingIOError(errno.EAGAIN, "reads that never block are not available here") from e
        raise
    if got != length:   # part of it is cached, or the file is shorter: the caller reads it the blocking way
        raise BlockingIOError(errno.EAGAIN, f"only {got} of {length} bytes are cached")
    return bytes(buf)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


_durable_folders: set[str] = set()   # folders whose own entry this process has fsync'd


def publish(tmp: str, final: str) -> None:
    """Rename a written and fsync'd temp file into place, durably (the directory too).

    A folder made here (the first archive of an `archives/xx/`) is only as durable as its
    entry in the parent, so the parent is synced too, once per folder and process, before
    anything goes in: a power loss must not take the folder, and the acknowledged archives
    in it, away (tests/cluster/test_power_loss.py found this)."""
    folder = os.path.dirname(final)
    if folder not in _durable_folders:
        _make_durable(folder)
    try:
        os.rename(tmp, final)
    except FileNotFoundError:
        if not os.path.exists(tmp):
            raise
        # The folder went since (a disk wiped and laid out again by its node, while this
        # process writes beside it: owned_disk.py): made again, once.
        _make_durable(folder)
        os.rename(tmp, final)
    fsync_path(folder)


def _make_durable(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    fsync_path(os.path.dirname(folder))
    _durable_folders.add(folder)


def make_folders(root: str, names) -> None:
    """Make the folders under `root` that are missing, and sync `root` if any was made.

    What goes into a new folder is acknowledged at once (a disk from before packs gains
    `packs/` at open and takes appends the next moment), and an entry `root` never synced
    is lost at power loss with everything in the folder (tests/cluster/test_power_loss_open.py)."""
    os.makedirs(root, exist_ok=True)
    made = False
    for name in names:
        try:
            os.mkdir(os.path.join(root, name))
            made = True
        except FileExistsError:
            pass
    if made:
        fsync_path(root)


def write_durably(path: str, data: bytes, tmp_dir: str) -> None:
    tmp = os.path.join(tmp_dir, f"{os.path.basename(path)}.{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    publish(tmp, path)


def fsync_path(path: str) -> None:
    """fsync a file or a folder by name (a folder's fsync makes the entries in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def walk(top: str, pattern: re.Pattern) -> Iterator[tuple[str, int]]:
    """(name, size) of the files matching `pattern` in the fan-out folders under `top`, by name."""
    for fan in sorted(os.listdir(top)):
        sub = os.path.join(top, fan)
        try:
            entries = list(os.scandir(sub))
        except (NotADirectoryError, FileNotFoundError):
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if pattern.fullmatch(entry.name):
                try:
                    yield entry.name, entry.stat().st_size
                except FileNotFoundError:
                    continue


def is_enospc(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno == errno.ENOSPC


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def truncate_quietly(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass
