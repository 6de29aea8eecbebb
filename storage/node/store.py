"""One disk's fragment store: the only code that touches files under a disk folder.

Every write goes to `tmp/`, is fsync'd, then renamed into place and the directory
fsync'd, so a crash leaves either the whole archive or nothing. Paths derive from
ids checked against strict patterns, so no request can reach outside the disk folder.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from typing import AsyncIterable, Iterator

from .. import layout

ARCHIVE_NAME = re.compile(r"[0-9a-f]{32}\.[0-9]{1,3}")
RECORD_NAME = re.compile(r"[0-9a-f]{32}")
_FLUSH_BYTES = 1 << 20
DISK_MARKER = "pocket-disk.json"


class BadName(ValueError):
    """A fragment or record name that is not an id; refused before any path is built."""


class ArchiveMissing(FileNotFoundError):
    pass


class DiskStore:
    def __init__(self, disk_id: str, root: str):
        self.disk_id = disk_id
        self.root = os.path.abspath(root)
        self._tmp = os.path.join(self.root, "tmp")

    def open(self) -> "DiskStore":
        """Create the folder layout, or check that the folder belongs to this disk id."""
        for sub in ("archives", "records", "tmp"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        marker = os.path.join(self.root, DISK_MARKER)
        if os.path.exists(marker):
            with open(marker) as f:
                found = json.load(f).get("disk_id")
            if found != self.disk_id:
                raise RuntimeError(
                    f"{self.root} belongs to disk {found!r}, not {self.disk_id!r}: "
                    "fix the disk list in the config instead of reusing a folder")
        else:
            _write_durably(marker, json.dumps({"disk_id": self.disk_id, "format": layout.FORMAT_VERSION}).encode(),
                           self._tmp)
        for stale in os.listdir(self._tmp):  # unfinished uploads from before a crash
            os.unlink(os.path.join(self._tmp, stale))
        return self

    # paths -------------------------------------------------------------------------------
    def _archive_path(self, name: str) -> str:
        if not ARCHIVE_NAME.fullmatch(name):
            raise BadName(f"not a fragment archive name: {name!r}")
        return os.path.join(self.root, "archives", name[30:32], name)

    def _record_path(self, rec_id: str) -> str:
        if not RECORD_NAME.fullmatch(rec_id):
            raise BadName(f"not a record id: {rec_id!r}")
        return os.path.join(self.root, "records", rec_id[30:32], rec_id)

    # writes ------------------------------------------------------------------------------
    async def put_archive(self, name: str, chunks: AsyncIterable[bytes]) -> int:
        """Stream an archive to disk; commit it only if it ends with a valid footer."""
        final = self._archive_path(name)
        tmp = os.path.join(self._tmp, f"{name}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        pending: list[bytes] = []
        buffered = size = 0
        loop = asyncio.get_running_loop()
        try:
            async for chunk in chunks:
                pending.append(chunk)
                buffered += len(chunk)
                if buffered >= _FLUSH_BYTES:
                    size += await loop.run_in_executor(None, _write_all, fd, pending)
                    pending, buffered = [], 0
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        # _commit owns the descriptor from here on: it closes it and removes tmp on failure.
        await loop.run_in_executor(None, _commit, fd, pending, tmp, final, name)
        return size + buffered

    async def put_record(self, rec_id: str, data: bytes) -> None:
        path = self._record_path(rec_id)
        await asyncio.get_running_loop().run_in_executor(None, _write_durably, path, data, self._tmp)

    async def delete_archive(self, name: str) -> bool:
        path = self._archive_path(name)
        try:
            await asyncio.get_running_loop().run_in_executor(None, os.unlink, path)
            return True
        except FileNotFoundError:
            return False

    # reads -------------------------------------------------------------------------------
    async def read(self, name: str, offset: int, length: int) -> bytes:
        path = self._archive_path(name)
        return await asyncio.get_running_loop().run_in_executor(None, _pread, path, offset, length)

    async def stat(self, name: str) -> int | None:
        try:
            return os.stat(self._archive_path(name)).st_size
        except FileNotFoundError:
            return None

    async def read_manifest(self, name: str) -> dict:
        path = self._archive_path(name)
        return await asyncio.get_running_loop().run_in_executor(None, read_manifest_file, path)

    def list_archives(self) -> Iterator[tuple[str, int]]:
        yield from _walk(os.path.join(self.root, "archives"), ARCHIVE_NAME)

    def list_records(self) -> Iterator[tuple[str, bytes]]:
        for rec_id, _size in _walk(os.path.join(self.root, "records"), RECORD_NAME):
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
        total, used, free = shutil.disk_usage(self.root)
        return {"disk": self.disk_id, "total": total, "used": used, "free": free}


def read_manifest_file(path: str) -> dict:
    """The manifest in an archive's trailer, after checking the footer and header."""
    try:
        with open(path, "rb") as f:
            layout.ArchiveHeader.unpack(f.read(layout.HEADER_SIZE))
            end = f.seek(0, os.SEEK_END)
            if end < layout.HEADER_SIZE + layout.FOOTER_SIZE:
                raise layout.CorruptFragment("archive too short")
            f.seek(end - layout.FOOTER_SIZE)
            length, want = layout.unpack_footer(f.read(layout.FOOTER_SIZE))
            if length > end - layout.HEADER_SIZE - layout.FOOTER_SIZE:
                raise layout.CorruptFragment(f"footer claims a {length}-byte trailer in a {end}-byte archive")
            f.seek(end - layout.FOOTER_SIZE - length)
            return layout.unpack_trailer(f.read(length), want)
    except FileNotFoundError:
        raise ArchiveMissing(path) from None


def _walk(top: str, pattern: re.Pattern) -> Iterator[tuple[str, int]]:
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


def _write_all(fd: int, chunks: list[bytes]) -> int:
    total = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]
            total += written
    return total


def _commit(fd: int, chunks: list[bytes], tmp: str, final: str, name: str) -> None:
    """Write the tail, check the archive is whole and is the one named, fsync, rename."""
    try:
        try:
            _write_all(fd, chunks)
            header = layout.ArchiveHeader.unpack(os.pread(fd, layout.HEADER_SIZE, 0))
            if layout.archive_name(header.version_id, header.index) != name:
                raise layout.CorruptFragment(f"archive header names {header.version_id}.{header.index}, not {name}")
            read_manifest_file(tmp)
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish(tmp, final)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _publish(tmp: str, final: str) -> None:
    folder = os.path.dirname(final)
    os.makedirs(folder, exist_ok=True)
    os.rename(tmp, final)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_durably(path: str, data: bytes, tmp_dir: str) -> None:
    tmp = os.path.join(tmp_dir, f"{os.path.basename(path)}.{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _publish(tmp, path)


def _pread(path: str, offset: int, length: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ArchiveMissing(path) from None
    try:
        length = max(0, min(length, os.fstat(fd).st_size - offset))
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
