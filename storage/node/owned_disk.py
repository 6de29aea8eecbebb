"""A disk of this host served by the gateway's disk-owner process, written directly.

Why: with several gateway workers (gateway.workers), one process owns the in-process
disks, since their packs have one writer (cli/serve.py `_disk_owner`), and the workers
reach them over the node API on loopback. For large archives that hop was the biggest
cost of a PUT: every fragment byte went through aiohttp's chunked writer, a loopback TCP
socket, the owner's parser and its checks, ~3 s of CPU per GiB of a 4+2 PUT against
~4 s for everything else (scratch runs of `pocket up`-shaped clusters, workers 2 vs 1).

A worker is a process of the same host, the same user and the same release as the
owner, so it writes large archives into the disk folder itself, exactly as a one-shot
repair writes beside a running owner (DiskStore.attach): a temp file under tmp/,
written, checked, fsync'd and renamed into archives/. The owner reads files it did not
write anyway. Reads of archive files are direct too: every record is checked against its
keyed checksum by the reader, whoever fetched it, so the owner adds nothing but the hop.
Everything else still goes to the owner: small archives (they belong in packs, which
have one writer, and are read from them), records, deletes, listings and scrubbing.

Not for a disk with a `capacity` quota: the quota is counted by the process that
writes, and only the owner's count is the disk's. Without one, free space is the
filesystem's, which every process sees alike.

Packed archives are read here too, from the pack files (pack_mirror.py: the place of each
one learnt by following the packs, every record header checked as it is read). And a
node process's disk is one of these when it is on this host (`trusted=False`): reads and
writes go direct only while the node's health answers say its folder is the one this
process sees at the configured path (same_host.py), and go to the node otherwise
(another host, a node that stopped answering: `pocket up --nodes 6` is the shape this
is for; bench/RESULTS.md, Session 13).
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import AsyncIterable

from . import ownership, same_host
from .archives import ArchiveMissing, head_of, mapped_read
from .client import RemoteDisk, _chain
from .pack_mirror import PackMirror
from .store import DiskStore

log = logging.getLogger("pocket.node")


class OwnedDisk(RemoteDisk):
    """`write_files=False`: archive files are read here, every write goes to the owner (a
    one-shot command: SIGKILLed mid-write, it would leave its temp file in the owner's
    tmp/ until the owner's scrub pass, where the owner's own request cleans up at once).
    `mapped_reads`: archive files are read as views of the page cache (archives.mapped_read)
    rather than copies, for a caller that drops what it read within a window (a repair)."""

    def __init__(self, *args, local: DiskStore, pack_threshold: int, write_files: bool = True,
                 mapped_reads: bool = False, trusted: bool = True, **kw):
        super().__init__(*args, **kw)
        self.local = local
        self.mirror = PackMirror(local.packs.folder)
        self._packed_below = pack_threshold   # what the owner would pack instead of filing
        self._write_files = write_files
        self._mapped = mapped_reads
        self._ready = False
        self._trusted = trusted               # False: a node's disk, direct only once its health says so
        self.direct = trusted
        self._following: asyncio.Future | None = None

    async def health(self) -> dict:
        """The owner's answer; for a node's disk, also whether its folder is the one seen here."""
        try:
            disk = await super().health()
        except BaseException:
            self.direct = self._trusted
            raise
        if not self._trusted:
            self.direct = same_host.matches(disk.get("where"), self.local.root)
        if self.direct and not self.mirror.caught_up_at:
            self._follow()      # the first read of the packs: a large disk's takes a while
        return disk

    async def put_archive(self, name: str, chunks: AsyncIterable[bytes]) -> int:
        if not self._write_files or not self.direct or not (self._trusted or ownership.held(self.local.root)):
            # a node that died since its last health answer: no archive lands on its disk
            # behind its back (a PUT below quorum must fail: tests/cluster/test_failures.py)
            return await super().put_archive(name, chunks)
        stream = aiter(chunks)
        head, _size, whole = await head_of(stream, self._packed_below)
        if whole or not self._folder_ready():
            return await super().put_archive(name, _chain(head, stream))
        return await self.local.put_archive(name, _chain(head, stream))

    def _file_size(self, name: str) -> int | None:
        """The archive file's size, None if there is none (small archives are packed): one
        stat on the loop, not a thread hop that fails for every small GET."""
        try:
            return os.stat(self.local.archive_path(name)).st_size
        except FileNotFoundError:
            return None

    def _folder_ready(self) -> bool:
        """Whether the owner has laid out the disk folder (it does so as it starts)."""
        if not self._ready:
            local = self.local
            self._ready = os.path.isdir(local.tmp_folder) and os.path.isdir(os.path.join(local.root, "archives"))
        return self._ready

    async def read(self, name: str, offset: int, length: int) -> bytes:
        if self.direct:
            data = await self._packed(name, offset, length)
            if data is not None:
                return data
            if self._file_size(name) is not None:
                try:
                    return await self._read_file(name, offset, length)
                except ArchiveMissing:  # deleted since
                    pass
        return await super().read(name, offset, length)   # gone, or not here to read: the owner knows

    async def _read_file(self, name: str, offset: int, length: int) -> bytes:
        if self._mapped:
            return await asyncio.get_running_loop().run_in_executor(
                None, mapped_read, self.local.archive_path(name), offset, length)
        return await self.local.read(name, offset, length)

    async def stream_range(self, name: str, offset: int, length: int):
        if self.direct:
            data = await self._packed(name, offset, length)
            if data is not None:
                return _HeldRange(data, offset)
            size = self._file_size(name)
            if size is not None:
                return _FileRange(self, name, offset, max(0, min(length, size - offset)))
        return await super().stream_range(name, offset, length)

    async def _packed(self, name: str, offset: int, length: int) -> bytes | None:
        """A packed archive's bytes from its pack file, or None when the packs do not hold
        it (a file, gone) as far as a catch-up with them shows, or cannot be read here."""
        mirror = self.mirror
        if not mirror.caught_up_at:   # the packs not read yet: the owner answers meanwhile
            self._follow()
            return None
        try:
            if mirror.knows(name):
                if mirror.fresh():
                    data = await mirror.aread(name, offset, length)
                    if data is not None:
                        return data
            elif self._file_size(name) is not None:
                return None
            await mirror.catch_up()    # written, deleted or moved since the last catch-up
            return await mirror.aread(name, offset, length)
        except OSError as e:
            log.warning("disk %s: reading %s from its packs here failed (%r); asking its owner",
                        self.disk_id, name, e)
            return None

    def _follow(self) -> None:
        """A catch-up in the background (the first: a large disk's packs take a while)."""
        if self._following is None or self._following.done():
            self._following = asyncio.ensure_future(self.mirror.catch_up())
            self._following.add_done_callback(_quiet)


class _FileRange:
    """RangeStream's interface over an archive file of this host: each part is one read."""

    def __init__(self, disk: OwnedDisk, name: str, offset: int, length: int):
        self.position, self._end = offset, offset + length
        self._disk, self._name = disk, name

    @property
    def done(self) -> bool:
        return self.position >= self._end

    async def take(self, n: int) -> bytes:
        n = min(n, self._end - self.position)
        data = await self._disk._read_file(self._name, self.position, n)   # the file stream_range found
        if len(data) != n:
            raise OSError(f"archive {self._name} on disk {self._disk.disk_id} ended {n - len(data)} bytes "
                          "early while it was read")
        self.position += n
        return data

    def close(self) -> None:
        pass


class _HeldRange:
    """RangeStream's interface over bytes already read (a packed archive's range)."""

    def __init__(self, data: bytes, offset: int):
        self.position, self._whole, self._data, self._at = offset, data, memoryview(data), 0

    @property
    def done(self) -> bool:
        return self._at >= len(self._data)

    async def take(self, n: int) -> bytes:
        if self._at == 0 and n >= len(self._data):   # the usual: taken whole, no copy
            self._at = len(self._data)
            self.position += self._at
            return self._whole
        part = self._data[self._at:self._at + n]
        self._at += len(part)
        self.position += len(part)
        return bytes(part)

    def close(self) -> None:
        pass


def _quiet(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("following packs failed: %r", fut.exception())
