"""storage.node.writeback: a large archive goes to the disk window by window while it is
written, with one device flush (the seal's fsync) per archive, not one per window."""
from __future__ import annotations

import asyncio
import os
import random

import pytest

from storage.node import writeback
from storage.node.files import read_cached, write_all
from storage.node.store import DiskStore
from tests.unit.test_store import VID, _drops_pages, chunked, make_archive

WINDOW = 64 << 10


def _cached(fd: int, offset: int, length: int) -> bool:
    try:
        read_cached(fd, length, offset)
        return True
    except BlockingIOError:
        return False


@pytest.fixture
def counted_syncs(monkeypatch):
    """Every fdatasync and fsync of this process, by call."""
    calls = []
    for name in ("fdatasync", "fsync"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda fd, _real=real, _name=name: (calls.append(_name), _real(fd))[1])
    return calls


def _write_windows(path: str, windows: int, seed: int, flusher=writeback.Writeback) -> tuple[bytes, list[bool]]:
    """A file written in 16 KiB pieces through a Writeback of 64 KiB windows, each piece
    handed to the disk; its bytes, and for each window (once the one after the next was
    written) whether it was still cached."""
    data = random.Random(seed).randbytes(windows * WINDOW + 12345)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        wb, cached = flusher(fd, WINDOW, 16 << 10), []
        view = memoryview(data)
        for at in range(0, len(data), 16 << 10):
            write_all(fd, [view[at:at + (8 << 10)], view[at + (8 << 10):at + (16 << 10)]], wb)
            done = (at + (16 << 10)) // WINDOW - 2    # the window before the last full one
            if done >= 0 and (at + (16 << 10)) % WINDOW == 0:
                cached.append(_cached(fd, done * WINDOW, WINDOW))
        os.fsync(fd)
        return data, cached
    finally:
        os.close(fd)


def test_windows_are_written_out_and_dropped_without_a_flush_each(tmp_path, counted_syncs):
    if writeback._sync_file_range is None:
        pytest.skip("no sync_file_range here: windows are fdatasync'd (the next test)")
    path = str(tmp_path / "archive")
    data, cached = _write_windows(path, windows=6, seed=1)
    assert counted_syncs == ["fsync"]            # the final one only, not one per window
    with open(path, "rb") as f:
        assert f.read() == data
    if _drops_pages(str(tmp_path)):
        assert cached and not any(cached)        # each finished window left the page cache


def test_the_head_the_seal_reads_back_stays_cached(tmp_path):
    """`keep`: the header is not dropped with its window (the seal checks it), the rest of
    that window is."""
    if writeback._sync_file_range is None or not _drops_pages(str(tmp_path)):
        pytest.skip("no sync_file_range here, or a filesystem that keeps clean pages")
    path = str(tmp_path / "archive")
    data = random.Random(4).randbytes(4 * WINDOW)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        wb = writeback.Writeback(fd, WINDOW, 16 << 10, keep=64)
        for at in range(0, len(data), 16 << 10):
            write_all(fd, [data[at:at + (16 << 10)]], wb)
        assert wb.cleaned >= 2 * WINDOW
        # not page 1: the kernel keeps the whole folio (a large one on ext4) the head is in
        assert not _cached(fd, WINDOW // 2, 4096) and not _cached(fd, WINDOW, 4096)
        assert read_cached(fd, 64, 0) == data[:64]     # last: a cached read may start readahead
    finally:
        os.close(fd)


def test_without_sync_file_range_each_window_is_flushed_and_dropped(tmp_path, counted_syncs, monkeypatch):
    monkeypatch.setattr(writeback, "_sync_file_range", None)
    path = str(tmp_path / "archive")
    data, cached = _write_windows(path, windows=4, seed=2)
    assert counted_syncs.count("fdatasync") == 4
    with open(path, "rb") as f:
        assert f.read() == data
    if _drops_pages(str(tmp_path)):
        assert cached and not any(cached)


def test_a_filesystem_refusing_sync_file_range_falls_back_to_flushes(tmp_path, counted_syncs, monkeypatch):
    """EINVAL (a filesystem or file that cannot) switches to fdatasync per window for good."""
    calls = []

    def refuse(*args):
        calls.append(args)
        writeback.ctypes.set_errno(22)   # EINVAL
        return -1

    monkeypatch.setattr(writeback, "_sync_file_range", refuse)
    path = str(tmp_path / "archive")
    data, _ = _write_windows(path, windows=3, seed=3)
    assert len(calls) == 1 and writeback._sync_file_range is None
    assert counted_syncs.count("fdatasync") == 3
    with open(path, "rb") as f:
        assert f.read() == data


def test_an_archive_of_many_windows_is_stored_byte_exact_with_one_flush(tmp_path, counted_syncs, monkeypatch):
    """Through the store: a 20 MiB archive (five 4 MiB windows) reads back byte for byte,
    and its file was fsync'd once, by the seal, not per window."""
    if writeback._sync_file_range is None:
        pytest.skip("no sync_file_range here")
    disk = DiskStore("d1", str(tmp_path / "disk")).open()
    archive, manifest = make_archive(index=4, size=80 << 20, segment_size=1 << 20, seed=11)
    name = f"{VID}.4"
    del counted_syncs[:]

    async def go():
        assert await disk.put_archive(name, chunked(archive, 300_001)) == len(archive)
        return await disk.read(name, 0, 1 << 62), await disk.read_manifest(name)

    got, got_manifest = asyncio.run(go())
    assert got == archive and got_manifest == manifest
    assert "fdatasync" not in counted_syncs
