"""One archive in bytes or in a file of its own: checked whole before it is committed,
its manifest read, a file sealed (written, checked, fsync'd) and published.

The format itself is layout.py's; this is the node's use of it, kept apart from the
store (store.py) that decides where an archive lives: in a pack or in a file.
"""
from __future__ import annotations

import mmap
import os
import sys

from .. import layout
from .files import drop_cached, publish, write_all


class ArchiveMissing(FileNotFoundError):
    pass


def check_archive(pread, end: int, name: str) -> None:
    """Raise CorruptFragment unless the archive's header names it `name` and its footer and
    trailer are intact. Only the current format is taken in: nothing writes format 1 any
    more. The manifest is not decoded: nobody here reads it, and decoding it three times
    per replicated PUT was 4 % of a small PUT's CPU (py-spy)."""
    raw, want, header = _trailer(pread, end, layout.STRICT)
    if layout.archive_name(header.version_id, header.index) != name:
        raise layout.CorruptFragment(f"archive header names {header.version_id}.{header.index}, not {name}")
    layout.check_trailer(raw, want, header.fmt)


async def head_of(stream, limit: int) -> tuple[list, int, bool]:
    """The chunks of `stream` (an async iterator) until they pass `limit` bytes, their
    size, and whether they were all of it: where an archive's size decides where it goes
    (a pack or a file; a node's batch or a stream of its own), before it is known."""
    head, size = [], 0
    async for chunk in stream:
        head.append(chunk)
        size += len(chunk)
        if size > limit:
            return head, size, False
    return head, size, True


def slicer(data: bytes):
    return lambda offset, length: data[offset:offset + length]


def file_reader(fd: int):
    return lambda offset, length: os.pread(fd, length, offset)


MAP_FROM = 64 << 10    # shorter reads are copied: a mapping costs two system calls


def mapped_read(path: str, offset: int, length: int) -> bytes | memoryview:
    """Up to `length` bytes of an archive file at `offset` (fewer at its end, as pread
    gives), as a read-only view of the page cache instead of a copy: for a reader that only
    checks and decodes what it reads (a one-shot repair). A pread copied every byte into a
    fresh buffer, whose pages the kernel zeroes on first touch: for 137 MiB rebuilt, `pocket
    repair` read ~550 MiB so and took ~90,000 minor faults; mapped, ~40,000 and a third
    less system time (bench.repair, 0.5 GiB; perf: copy_to_user 9 %, clear_page 6 % of the
    command before). The pages are mapped before the call returns (MAP_POPULATE), so what
    the disk must read is read in the calling thread (a pool's), not on first touch.

    Safe because an archive file is never changed or cut once published: it is replaced
    by a rename or unlinked, and a mapping keeps the inode it was made of. The mapping is
    released with the last view of it. ArchiveMissing if there is no file (as read_range)."""
    fd, length = _open_clamped(path, offset, length)
    try:
        if length < MAP_FROM:
            return os.pread(fd, length, offset)
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        try:
            mapped = mmap.mmap(fd, offset - start + length, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                               prot=mmap.PROT_READ, offset=start)
        except OSError:   # a file system that maps no files (ENODEV), or no address space left
            return os.pread(fd, length, offset)
    finally:
        os.close(fd)
    return memoryview(mapped)[offset - start:]


def read_manifest_file(path: str) -> dict:
    """The manifest in an archive's trailer, after checking the footer and header."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ArchiveMissing(path) from None
    try:
        return manifest(file_reader(fd), os.fstat(fd).st_size)
    finally:
        os.close(fd)


def manifest(pread, end: int, accept: frozenset[int] = layout.ANY_FORMAT) -> dict:
    """Check header and footer of an archive `end` bytes long, read via pread(offset, length).

    Archives written before keyed checksums are read too (index rebuild, scrub collection);
    whether their object may still be in that format is the reader's call (layout.accepted)."""
    raw, want, header = _trailer(pread, end, accept)
    return layout.unpack_trailer(raw, want, header.fmt)


def _trailer(pread, end: int, accept: frozenset[int]) -> tuple[bytes, int, layout.ArchiveHeader]:
    """(trailer bytes, the checksum the footer wants, header) of an archive."""
    header = layout.ArchiveHeader.unpack(pread(0, layout.HEADER_SIZE), accept)
    if end < layout.HEADER_SIZE + layout.FOOTER_SIZE:
        raise layout.CorruptFragment("archive too short")
    length, want = layout.unpack_footer(pread(end - layout.FOOTER_SIZE, layout.FOOTER_SIZE))
    if length > end - layout.HEADER_SIZE - layout.FOOTER_SIZE:
        raise layout.CorruptFragment(f"footer claims a {length}-byte trailer in a {end}-byte archive")
    return pread(end - layout.FOOTER_SIZE - length, length), want, header


def seal(fd: int, chunks: list[bytes], name: str) -> None:
    """Write the tail, check the archive is whole and is the one named, fsync; always closes fd."""
    try:
        write_all(fd, chunks)
        check_archive(file_reader(fd), os.fstat(fd).st_size, name)
        os.fsync(fd)
        drop_cached(fd)
    finally:
        os.close(fd)


def seal_and_publish(fd: int, chunks: list[bytes], name: str, tmp: str, final: str) -> None:
    seal(fd, chunks, name)
    publish(tmp, final)


def read_range(path: str, offset: int, length: int) -> bytes:
    """Up to `length` bytes of the file at `offset` (fewer past its end); ArchiveMissing if there is none."""
    found = open_range(path, offset, length)
    try:
        return found.read(found.length)
    finally:
        found.close()


def open_range(path: str, offset: int, length: int) -> "ArchiveRange":
    """Up to `length` bytes of the file at `offset`, to be read piece by piece."""
    fd, length = _open_clamped(path, offset, length)
    return ArchiveRange(file_reader(fd), offset, length, lambda: os.close(fd))


def _open_clamped(path: str, offset: int, length: int) -> tuple[int, int]:
    """The file opened for reading, and `length` clamped to what it holds past `offset`."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ArchiveMissing(path) from None
    try:
        return fd, max(0, min(length, os.fstat(fd).st_size - offset))
    except BaseException:
        os.close(fd)
        raise


def map_file(path: str) -> memoryview:
    """The file mapped read-only, for a reader that checks all of it (`pocket migrate verify
    --deep`): hashing and comparing the page cache's pages where they are saves pread's copy
    of every byte (0.66 -> 0.42 CPU s to read and BLAKE3-hash 1 GiB of archives here).
    Safe because an archive is never changed in place (a replaced one keeps its inode for
    the mapping). Sequential: the kernel reads ahead of the faults as it does for pread."""
    fd, size = _open_clamped(path, 0, sys.maxsize)
    try:
        if not size:
            return memoryview(b"")
        mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    mapped.madvise(mmap.MADV_SEQUENTIAL)
    return memoryview(mapped)


class ArchiveRange:
    """A byte range of one archive, clamped to its end, read in pieces: the node sends a
    fragment of a large object (a quarter of a 5 GiB one under ec:4+2) as it reads it,
    never holding it whole. `length` is known before the first piece, for Content-Length."""

    def __init__(self, pread, offset: int, length: int, close=None):
        self.length = length
        self._pread, self._pos, self._end, self._close = pread, offset, offset + length, close

    def read(self, n: int) -> bytes:
        """The next `n` bytes or those left; an archive is never changed in place, so a
        short read means the file was cut under us: OSError."""
        n = min(n, self._end - self._pos)
        data = self._pread(self._pos, n)
        if len(data) != n:
            raise OSError(f"archive ended {n - len(data)} bytes early while it was read")
        self._pos += n
        return data

    def close(self) -> None:
        if self._close is not None:
            close, self._close = self._close, None
            close()
