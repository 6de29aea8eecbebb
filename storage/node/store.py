"""One disk's fragment store: the only code that touches files under a disk folder (with files.py).

Small archives (up to `pack_threshold` bytes) and all records are appended to the
disk's pack files (packs.py), where one fsync covers every append that arrived while
the previous one ran. Larger archives get a file each: written to `tmp/`, fsync'd,
renamed into place and the directory fsync'd, so a crash leaves either the whole archive
or nothing. Either way nothing is acknowledged before its fsync, and callers cannot tell
the two apart. Paths derive from ids checked against strict patterns, so no request can
reach outside the disk folder.

A name can be in a pack and in a file at once (a file written before packs existed, or
before the threshold was raised, then rewritten by repair); the packed copy is the newer
and wins every read, and deleting the archive removes both. The other way round, a file
the owner writes never goes live while a packed copy exists: the packed one is deleted
first. A process attached beside the owner (a one-shot `pocket repair`) cannot change the
packs, so its file goes live beside the packed copy; when that copy is corrupt, the
owner's disk scrubber drops it for the file (`adopt_file`): reads pay no extra lookup.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
import uuid
from typing import AsyncIterable, Iterator

from .. import layout
from . import beside_temp, pack_compaction, same_host
from .archives import (ArchiveMissing, ArchiveRange, check_archive, head_of, manifest, map_file, open_range,
                       read_manifest_file, read_range, seal, seal_and_publish, slicer)
from .files import make_folders, publish, unlink_quietly, walk, write_all, write_durably
from .ownership import own
from .packformat import ARCHIVE, ARCHIVE_NAME, RECORD, RECORD_HEADER_SIZE, RECORD_NAME
from .deferred_packs import DeferredPacks
from .packs import PackSet
from .quota import Quota, tree_bytes
from .writeback import Writeback

_FLUSH_BYTES = 1 << 20
INLINE_READ = 1 << 20      # packed archives up to this are read on the loop when cached (files.read_cached)
DISK_MARKER = "pocket-disk.json"
PACK_THRESHOLD = 264 << 10     # config.py StorageConfig.pack_threshold says why
PACK_SIZE = 64 << 20
STALE_TEMP_SECONDS = 3600.0   # see DiskStore.drop_stale_temp


class BadName(ValueError):
    """A fragment or record name that is not an id; refused before any path is built."""


class MissingDisk(RuntimeError):
    """A configured disk folder that was never initialised (or whose disk is not mounted)."""


class DiskStore:
    """`pack_threshold` = 0 gives every archive and record a file of its own (no packs);
    `capacity` > 0 caps the bytes stored (quota.py)."""

    def __init__(self, disk_id: str, root: str, pack_threshold: int = PACK_THRESHOLD,
                 pack_size: int = PACK_SIZE, capacity: int = 0):
        self.disk_id = disk_id
        self.root = os.path.abspath(root)
        self.tmp_folder = os.path.join(self.root, "tmp")
        self.pack_threshold = pack_threshold
        self.packs = PackSet(os.path.join(self.root, "packs"), pack_size)
        self.scrubber = None      # the DiskScrubber (disk_scrub.py) of the process that opened it
        self.quota = Quota(disk_id, self.root, capacity, self.packs.total_bytes)
        self._lock_fd: int | None = None

    def open(self, initialize: bool = True) -> "DiskStore":
        """Check that the folder belongs to this disk id (creating the layout of a new disk
        when `initialize`), then load the packs.

        A node refuses a folder without its marker unless told to initialise it: an empty
        folder is what an unmounted disk looks like, and writing there would fill the root
        filesystem with data that vanishes when the disk is mounted again."""
        marker = os.path.join(self.root, DISK_MARKER)
        if not initialize and not os.path.exists(marker):
            raise MissingDisk(
                f"disk {self.disk_id}: {self.root} has no {DISK_MARKER}; is the disk mounted? "
                "If it is a new disk, start the node once with --init to initialise it.")
        make_folders(self.root, ("archives", "records", "tmp", "packs"))
        if os.path.exists(marker):
            with open(marker) as f:
                found = json.load(f).get("disk_id")
            if found != self.disk_id:
                raise RuntimeError(
                    f"{self.root} belongs to disk {found!r}, not {self.disk_id!r}: "
                    "fix the disk list in the config instead of reusing a folder")
        else:
            write_durably(marker, json.dumps({"disk_id": self.disk_id, "format": layout.FORMAT_VERSION}).encode(),
                           self.tmp_folder)
        self._lock_fd = own(self.root, self.disk_id)   # ownership.py
        for stale in os.listdir(self.tmp_folder):  # unfinished uploads from before a crash
            os.unlink(os.path.join(self.tmp_folder, stale))
        self.packs.load()
        self.quota.start(tree_bytes(os.path.join(self.root, "archives"), os.path.join(self.root, "records")))
        return self

    def attach(self, read_packs: bool = True, lazy_packs: bool = False) -> "DiskStore":
        """Use a disk folder that a running process may own (one-shot commands).

        Packs are read, never written: small archives and records go to files of their own
        (which the owner reads as well), nothing in tmp/ is touched, no torn tail is cut.
        `read_packs=False`: not even read, for a command that only writes (`pocket migrate
        copy`; scanning checks every record header, 0.27-0.30 s for 66,000 on six disks);
        `lazy_packs`: read at the first name that may be packed (deferred_packs.py)."""
        marker = os.path.join(self.root, DISK_MARKER)
        with open(marker) as f:
            if json.load(f).get("disk_id") != self.disk_id:
                raise RuntimeError(f"{self.root} does not belong to disk {self.disk_id!r}")
        if lazy_packs and read_packs:
            threshold, self.pack_threshold = self.pack_threshold, 0
            self.packs = DeferredPacks(self.packs, self.archive_path, threshold)
            return self
        return self._files_only(read_packs)

    def beside_owner(self) -> "DiskStore":
        """Write archive files into a disk folder that another process of this gateway owns
        and serves (node/owned_disk.py): `attach(read_packs=False)`, but the marker is not
        checked here, since the owner may still be laying out a new disk as the workers
        start (OwnedDisk waits for its folders)."""
        return self._files_only(read_packs=False)

    def _files_only(self, read_packs: bool) -> "DiskStore":
        self.pack_threshold = 0
        if read_packs:
            self.packs.load(readonly=True)
        else:
            self.packs.readonly = True
        beside_temp.sweep_dead(self.tmp_folder)    # what writers killed before us left
        return self

    def drop_stale_temp(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Remove files in tmp/ nobody has written to for `older_than` seconds (owner only),
        and return how many. Opening the disk clears tmp/ of what a crash left, but
        other processes write beside a running owner (gateway workers, node/owned_disk.py;
        one-shot repairs), and one killed mid-archive leaves its temp file until the
        owner restarts. An upload in progress writes continuously (a stalled one is cut
        off by the body and node timeouts long before), so an hour untouched is stale."""
        if self.packs.readonly:   # attached: tmp/ is the owner's to clean
            return 0
        removed, now = beside_temp.sweep_dead(self.tmp_folder), time.time()
        for name in os.listdir(self.tmp_folder):
            path = os.path.join(self.tmp_folder, name)
            try:
                if now - os.stat(path).st_mtime > older_than:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:   # published or aborted meanwhile
                pass
        return removed

    def close(self) -> None:
        """Let queued pack appends finish, then stop the pack writer."""
        self.packs.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)   # releases the lock
            self._lock_fd = None

    # paths -------------------------------------------------------------------------------
    def archive_path(self, name: str) -> str:
        """Where an archive of its own lives; a name not an archive's is refused (BadName)."""
        if not ARCHIVE_NAME.fullmatch(name):
            raise BadName(f"not a fragment archive name: {name!r}")
        return os.path.join(self.root, "archives", name[30:32], name)

    def _record_path(self, rec_id: str) -> str:
        if not RECORD_NAME.fullmatch(rec_id):
            raise BadName(f"not a record id: {rec_id!r}")
        return os.path.join(self.root, "records", rec_id[30:32], rec_id)

    # writes ------------------------------------------------------------------------------
    async def put_archive(self, name: str, chunks: AsyncIterable[bytes]) -> int:
        """Stream an archive in; commit it only if it ends with a valid footer.

        The size is known only at the end of the stream, so up to `pack_threshold` bytes
        are held in memory; an archive that stays below goes to a pack, a larger one
        continues into a file of its own."""
        final = self.archive_path(name)
        stream = aiter(chunks)
        head, size, whole = [], 0, False
        if self.pack_threshold:
            head, size, whole = await head_of(stream, self.pack_threshold)
            if whole:
                data = b"".join(head)
                check_archive(slicer(data), len(data), name)
                await self._append(ARCHIVE, name, data, refuse=True)
                return size
        return await self._put_file(name, final, head, size, stream)

    async def _put_file(self, name: str, final: str, pending: list[bytes], buffered: int, stream) -> int:
        if self.packs.readonly:    # beside the owner: a temp file a successor removes if we die
            tmp, fd = beside_temp.create(self.tmp_folder, name)
        else:
            tmp = os.path.join(self.tmp_folder, f"{name}.{uuid.uuid4().hex}")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        size = held = 0
        writeback = Writeback(fd, keep=layout.HEADER_SIZE)
        loop = asyncio.get_running_loop()
        sealing = False
        try:
            async for chunk in stream:
                pending.append(chunk)
                buffered += len(chunk)
                if buffered >= _FLUSH_BYTES:
                    self.quota.take(buffered, f"archive {name}")
                    held += buffered
                    size += await loop.run_in_executor(None, write_all, fd, pending, writeback)
                    pending, buffered = [], 0
            self.quota.take(buffered, f"archive {name}")
            held += buffered
            sealing = True  # seal() owns the descriptor from here on and closes it whatever happens
            if self.packs.readonly:   # attached: the owner's scrubber drops a corrupt packed copy,
                # so nothing happens between sealing and publishing: one trip to the thread pool
                await loop.run_in_executor(None, seal_and_publish, fd, pending, name, tmp, final)
            else:
                await loop.run_in_executor(None, seal, fd, pending, name)
                await self.packs.delete(name)  # a packed copy must not outlive this newer file
                await loop.run_in_executor(None, publish, tmp, final)
        except BaseException:
            if not sealing:
                os.close(fd)
            unlink_quietly(tmp)
            self.quota.give_back(held)
            raise
        return size + buffered

    async def put_record(self, rec_id: str, data: bytes) -> None:
        """Records (tombstones, bucket events) count against the quota but are never refused
        by it: a delete must work on a full disk."""
        path = self._record_path(rec_id)
        if not self.pack_threshold:
            await asyncio.get_running_loop().run_in_executor(None, write_durably, path, data, self.tmp_folder)
            self.quota.take(len(data), f"record {rec_id}", refuse=False)
            return
        await self._append(RECORD, rec_id, data, refuse=False)

    async def _append(self, kind: int, name: str, data: bytes, refuse: bool) -> None:
        """A pack append, held against the quota until the pack's size includes it."""
        held = RECORD_HEADER_SIZE + len(data)
        self.quota.take(held, name, refuse)
        try:
            await self.packs.put(kind, name, data)
        finally:
            self.quota.give_back(held)

    async def delete_archive(self, name: str, durable: bool = True) -> bool:
        path = self.archive_path(name)
        packed = await self.packs.delete(name, durable)
        try:
            size = os.stat(path).st_size
            await asyncio.get_running_loop().run_in_executor(None, os.unlink, path)
        except FileNotFoundError:
            return packed
        self.quota.give_back(size)
        return True

    async def adopt_file(self, name: str, check) -> bool:
        """Drop the packed copy of `name` for the file of that name if `check(name, bytes)`
        finds the file whole (owner only; True if it did). The file is read whole, not to
        the packed copy's length: a repair writes the current format, and its trailer as
        today's serializer does, so the copy of an archive written by an earlier release
        may be longer or shorter (a non-ASCII key) than what it replaces."""
        if self.packs.readonly or self.packs.archive_size(name) is None:
            return False
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, read_range, self.archive_path(name), 0,
                                                                    1 << 62)
        except ArchiveMissing:
            return False
        return await check(name, data) and await self.packs.delete(name)

    async def compact(self, min_live: float = 0.5) -> dict:
        """Rewrite packs less than `min_live` live into the newest pack; see pack_compaction.py."""
        return await pack_compaction.compact(self.packs, min_live)

    # reads -------------------------------------------------------------------------------
    async def read(self, name: str, offset: int, length: int) -> bytes:
        found, data = await self.open_range(name, offset, length, length)
        found.close()
        return data

    def read_now(self, name: str, offset: int, length: int) -> bytes:
        """`read` in the calling thread (a node's fetch reads many in one hop, fetch.py)."""
        found, data = self._open_range(name, offset, length, length)
        found.close()
        return data

    async def open_range(self, name: str, offset: int, length: int, first: int) -> tuple[ArchiveRange, bytes]:
        """Bytes offset..offset+length of an archive (clamped to its end) to be read in
        pieces, and the first `first` of them, read in the same thread hop: a range that
        short is then whole (the caller closes the range)."""
        self.archive_path(name)
        if first >= length and (size := self.packs.archive_size(name)) is not None and size <= INLINE_READ:
            with contextlib.suppress(BlockingIOError):   # a small packed archive the page cache holds: no hop
                data = self.packs.read_archive(name, offset, length, cached_only=True)
                if data is not None:
                    return self._open_range(name, offset, length, first, data)
        return await asyncio.get_running_loop().run_in_executor(None, self._open_range, name, offset, length, first)

    def _open_range(self, name: str, offset: int, length: int, first: int,
                    data: bytes | None = None) -> tuple[ArchiveRange, bytes]:
        if data is None:
            data = self.packs.read_archive(name, offset, length)
        found = ArchiveRange(slicer(data), 0, len(data)) if data is not None else \
            open_range(self.archive_path(name), offset, length)
        try:
            return found, found.read(first)
        except BaseException:
            found.close()
            raise

    def map_archive(self, name: str) -> memoryview | None:
        """An archive of its own mapped read-only (archives.map_file); None for a packed one.
        Raises FileNotFoundError (ArchiveMissing) when there is neither."""
        if self.packs.archive_size(name) is not None:
            return None
        return map_file(self.archive_path(name))

    async def stat(self, name: str) -> int | None:
        return self.stat_now(name)

    def stat_now(self, name: str) -> int | None:
        path = self.archive_path(name)
        size = self.packs.archive_size(name)
        if size is not None:
            return size
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None

    async def read_manifest(self, name: str) -> dict:
        self.archive_path(name)
        return await asyncio.get_running_loop().run_in_executor(None, self._read_manifest, name)

    def _read_manifest(self, name: str) -> dict:
        data = self.packs.read_archive(name, 0, 1 << 62)
        if data is None:
            return read_manifest_file(self.archive_path(name))
        return manifest(slicer(data), len(data))

    def stamp(self, name: str) -> tuple | None:
        """Identity of the archive stored under `name` now (None: there is none). A rewrite
        or delete changes it, so a scrub finding about older bytes can be told stale."""
        packed = self.packs.stamp(name)
        if packed is not None:
            return packed
        try:
            st = os.stat(self.archive_path(name))
        except FileNotFoundError:
            return None
        return ("file", st.st_ino, st.st_mtime_ns, st.st_size)

    async def scrub_state(self) -> dict:
        """Progress and findings of this disk's scrubber (the node API serves the same)."""
        scrubber = self._scrubber()
        await scrubber.settle()
        return scrubber.report()

    async def scrub_request(self, rate: int | None = None) -> int:
        """Ask for a full scrub pass starting now; returns the number of that pass."""
        return self._scrubber().request(rate)

    def _scrubber(self):
        if self.scrubber is None:
            raise RuntimeError(f"disk {self.disk_id}: no scrubber runs in this process")
        return self.scrubber

    def list_archives(self) -> Iterator[tuple[str, int]]:
        """Packed and file archives alike, by name."""
        found = dict(self.packs.archive_list())
        for name, size in walk(os.path.join(self.root, "archives"), ARCHIVE_NAME):
            found.setdefault(name, size)
        yield from sorted(found.items())

    def list_records(self) -> Iterator[tuple[str, bytes]]:
        packed = set()
        for rec_id in sorted(self.packs.record_ids()):
            data = self.packs.read_record(rec_id)
            if data is not None:     # a corrupt one may have a good file copy (storage/durability/records.py)
                packed.add(rec_id)
                yield rec_id, data
        for rec_id, _size in walk(os.path.join(self.root, "records"), RECORD_NAME):
            if rec_id in packed:
                continue
            try:
                with open(self._record_path(rec_id), "rb") as f:
                    yield rec_id, f.read()
            except FileNotFoundError:
                continue

    async def iter_archives(self):
        for item in self.list_archives():
            yield item

    async def iter_records(self):
        for item in self.list_records():
            yield item

    async def health(self) -> dict:
        return self.usage()

    def usage(self) -> dict:
        """Filesystem usage; under a capacity quota, `free` is what the quota still allows.
        `where`: the folder's identity, for a reader on this host (same_host.py)."""
        total, used, free = shutil.disk_usage(self.root)
        out = {"disk": self.disk_id, "total": total, "used": used, "free": free, "packs": self.packs.stats(),
               "where": same_host.identity(self.root)}
        if self.quota.capacity:
            out.update(capacity=self.quota.capacity, quota_used=self.quota.used(),
                       free=min(free, self.quota.free()))
        return out
