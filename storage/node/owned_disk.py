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
"""
from __future__ import annotations

import asyncio
import os
from typing import AsyncIterable

from .archives import ArchiveMissing, head_of, mapped_read
from .client import RemoteDisk, _chain
from .store import DiskStore


class OwnedDisk(RemoteDisk):
    """`write_files=False`: archive files are read here, every write goes to the owner (a
    one-shot command: SIGKILLed mid-write, it would leave its temp file in the owner's
    tmp/ until the owner's scrub pass, where the owner's own request cleans up at once).
    `mapped_reads`: archive files are read as views of the page cache (archives.mapped_read)
    rather than copies, for a caller that drops what it read within a window (a repair)."""

    def __init__(self, *args, local: DiskStore, pack_threshold: int, write_files: bool = True,
                 mapped_reads: bool = False, **kw):
        super().__init__(*args, **kw)
        self.local = local
        self._packed_below = pack_threshold   # what the owner would pack instead of filing
        self._write_files = write_files
        self._mapped = mapped_reads
        self._ready = False

    async def put_archive(self, name: str, chunks: AsyncIterable[bytes]) -> int:
        if not self._write_files:
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
        if self._file_size(name) is not None:
            try:
                return await self._read_file(name, offset, length)
            except ArchiveMissing:  # deleted since
                pass
        return await super().read(name, offset, length)   # packed (or gone): the owner knows

    async def _read_file(self, name: str, offset: int, length: int) -> bytes:
        if self._mapped:
            return await asyncio.get_running_loop().run_in_executor(
                None, mapped_read, self.local.archive_path(name), offset, length)
        return await self.local.read(name, offset, length)

    async def stream_range(self, name: str, offset: int, length: int):
        size = self._file_size(name)
        if size is None:
            return await super().stream_range(name, offset, length)
        return _FileRange(self, name, offset, max(0, min(length, size - offset)))


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
