"""Unit tests for storage.node.store.DiskStore: one disk's fragment archive store."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random

import pytest

from storage import layout
from storage.codec import Codec
from storage.layout import FORMAT_VERSION, ArchiveHeader, CorruptFragment, Geometry, pack_record, pack_trailer
from storage.node.ownership import DiskInUse
from storage.node.files import read_cached
from storage.node.store import ArchiveMissing, BadName, DiskStore

VID = "00112233445566778899aabbccddeeff"
VID2 = "ffeeddccbbaa99887766554433221100"


def make_archive(vid: str = VID, index: int = 0, size: int = 5000, segment_size: int = 2048,
                 k: int = 4, m: int = 2, seed: int = 0, fmt: int = FORMAT_VERSION) -> tuple[bytes, dict]:
    """An archive as a gateway writes it; `fmt` an older archive format, as a disk move
    copies archives written by an earlier release."""
    obj = random.Random(seed).randbytes(size)
    codec = Codec(k, m)
    geo = Geometry(size, segment_size, k)
    parts = [ArchiveHeader(vid, index, k, m, segment_size, geo.block_size, fmt).pack()]
    for j in range(geo.segments):
        parts.append(pack_record(codec.encode(obj[j * segment_size:(j + 1) * segment_size])[index], fmt))
    manifest = {"bucket": "b", "key": f"k-{seed}", "size": size, "version": vid, "version_id": vid, "index": index,
                "k": k, "m": m}
    parts.append(pack_trailer(manifest, fmt))
    return b"".join(parts), manifest


async def chunked(data: bytes, step: int = 777):
    for i in range(0, len(data), step):
        await asyncio.sleep(0)
        yield data[i:i + step]


def files_under(top) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(top):
        out += [os.path.relpath(os.path.join(dirpath, f), top) for f in files]
    return sorted(out)


@pytest.fixture
def disk(tmp_path):
    return DiskStore("d1", str(tmp_path / "disk")).open()


@pytest.fixture(params=["packed", "file"])
def either_disk(request, tmp_path):
    """A small archive goes to a pack by default, and to a file of its own without packs."""
    threshold = {"packed": 256 << 10, "file": 0}[request.param]
    return DiskStore("d1", str(tmp_path / "disk"), pack_threshold=threshold).open()


def stored_at(disk: DiskStore, name: str) -> tuple[str, int, int]:
    """(path, offset, length) of the bytes that hold an archive: its pack, or its own file."""
    loc = disk.packs.location(name)
    if loc is not None:
        return loc
    path = os.path.join(disk.root, "archives", name[30:32], name)
    return path, 0, os.path.getsize(path)


def flip(path: str, offset: int, new: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(new)


def test_put_archive_commits_readable_file(either_disk, tmp_path):
    disk = either_disk
    archive, manifest = make_archive()

    async def go():
        size = await disk.put_archive(f"{VID}.0", chunked(archive))
        assert size == len(archive)
        assert await disk.read(f"{VID}.0", 0, len(archive)) == archive
        assert await disk.read(f"{VID}.0", 100, 50) == archive[100:150]
        assert await disk.read_manifest(f"{VID}.0") == manifest
        assert await disk.stat(f"{VID}.0") == len(archive)
        assert await disk.stat(f"{VID}.1") is None

    asyncio.run(go())
    assert files_under(tmp_path / "disk" / "tmp") == []
    path, offset, length = stored_at(disk, f"{VID}.0")
    if disk.pack_threshold:
        assert files_under(tmp_path / "disk" / "archives") == []
        assert os.path.dirname(path) == os.path.join(disk.root, "packs")
    else:
        assert files_under(tmp_path / "disk" / "archives") == [os.path.join(VID[30:32], f"{VID}.0")]
        assert files_under(tmp_path / "disk" / "packs") == []
    assert length == len(archive)
    with open(path, "rb") as f:
        f.seek(offset)
        assert f.read(length) == archive


def test_put_archive_larger_than_flush_threshold(disk):
    archive, manifest = make_archive(index=2, size=3 << 20, segment_size=1 << 20)

    async def go():
        assert await disk.put_archive(f"{VID}.2", chunked(archive, 64 * 1024)) == len(archive)
        assert await disk.read(f"{VID}.2", 0, 1 << 62) == archive
        assert await disk.read_manifest(f"{VID}.2") == manifest

    asyncio.run(go())


def test_put_archive_from_many_small_views_is_byte_exact(disk):
    """Writers hand the store a record's head and payload as separate buffers, payloads
    as views into their segment; a flush gathers them in writev calls of at most IOV_MAX
    buffers. 3 MiB in 300-byte views is ~3,500 buffers per 1 MiB flush."""
    archive, manifest = make_archive(index=1, size=3 << 20, segment_size=1 << 20, seed=7)

    async def views():
        view = memoryview(archive)
        for at in range(0, len(archive), 300):
            yield view[at:at + 300]

    async def go():
        assert await disk.put_archive(f"{VID}.1", views()) == len(archive)
        assert await disk.read(f"{VID}.1", 0, 1 << 62) == archive
        assert await disk.read_manifest(f"{VID}.1") == manifest

    asyncio.run(go())


def test_put_archive_replaces_existing(disk):
    a1, _ = make_archive(seed=1)
    a2, m2 = make_archive(seed=2, size=7000)

    async def go():
        await disk.put_archive(f"{VID}.0", chunked(a1))
        await disk.put_archive(f"{VID}.0", chunked(a2))
        assert await disk.read(f"{VID}.0", 0, 1 << 30) == a2
        assert await disk.read_manifest(f"{VID}.0") == m2

    asyncio.run(go())


class Boom(Exception):
    pass


@pytest.mark.parametrize("fail_after", [10, 3 << 20])
def test_stream_raising_midway_leaves_nothing(disk, tmp_path, fail_after):
    archive, _ = make_archive(size=4 << 20, segment_size=1 << 20, k=1, m=2)
    assert len(archive) > fail_after + 65536

    async def broken():
        sent = 0
        for i in range(0, len(archive), 65536):
            if sent >= fail_after:
                raise Boom("client went away")
            chunk = archive[i:i + 65536]
            sent += len(chunk)
            yield chunk
        raise AssertionError("fail_after beyond the archive")

    async def go():
        with pytest.raises(Boom):
            await disk.put_archive(f"{VID}.0", broken())

    asyncio.run(go())
    assert files_under(tmp_path / "disk" / "archives") == []
    assert files_under(tmp_path / "disk" / "tmp") == []
    assert list(disk.list_archives()) == []


@pytest.mark.parametrize("how", ["no-trailer", "cut-in-footer", "cut-in-records", "header-only",
                                 "empty", "corrupt-trailer", "garbage"])
def test_stream_without_valid_footer_is_not_committed(disk, tmp_path, how):
    archive, _ = make_archive()
    head = archive[:layout.HEADER_SIZE]
    trailer_len = len(pack_trailer(make_archive()[1]))
    bad = {
        "no-trailer": archive[:-trailer_len],
        "cut-in-footer": archive[:-5],
        "cut-in-records": archive[:layout.HEADER_SIZE + 100],
        "header-only": head,
        "empty": b"",
        "corrupt-trailer": archive[:-trailer_len] + b"X" + archive[-trailer_len + 1:],
        "garbage": random.Random(5).randbytes(5000),
    }[how]

    async def go():
        with pytest.raises(CorruptFragment):
            await disk.put_archive(f"{VID}.0", chunked(bad))
        assert await disk.stat(f"{VID}.0") is None

    asyncio.run(go())
    assert files_under(tmp_path / "disk" / "archives") == []
    assert files_under(tmp_path / "disk" / "tmp") == []


def test_failed_put_does_not_disturb_existing_archive(disk, tmp_path):
    good, manifest = make_archive()

    async def go():
        await disk.put_archive(f"{VID}.0", chunked(good))
        with pytest.raises(CorruptFragment):
            await disk.put_archive(f"{VID}.0", chunked(good[:-1]))
        assert await disk.read(f"{VID}.0", 0, 1 << 30) == good
        assert await disk.read_manifest(f"{VID}.0") == manifest

    asyncio.run(go())
    assert files_under(tmp_path / "disk" / "tmp") == []


BAD_NAMES = [
    "../" + f"{VID}.0",
    f"../../{VID}.0",
    f"{VID[:30]}/../{VID}.0",
    "/etc/passwd",
    f"/tmp/{VID}.0",
    f"aa/{VID}.0",
    "..",
    ".",
    "",
    VID,                      # no fragment index
    f"{VID}.",                # empty index
    f"{VID}.1234",            # index too long
    f"{VID}.-1",
    f"{VID.upper()}.0",       # ids are lower-case hex
    f"{VID[:31]}.0",          # too short
    f"{VID}0.0",              # too long
    f"{VID[:31]}g.0",         # not hex
    f"{VID}.0\n",             # trailing newline must not slip past the pattern
    f"{VID}.\u0663",          # a non-ASCII digit is not a fragment index
    f"{VID}.0/",
    f"{VID}.0\x00",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_archive_names_are_refused_and_touch_nothing(tmp_path, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"untouched")
    disk = DiskStore("d1", str(tmp_path / "disk")).open()
    before = files_under(tmp_path)
    archive, _ = make_archive()

    async def go():
        with pytest.raises(BadName):
            await disk.put_archive(name, chunked(archive))
        with pytest.raises(BadName):
            await disk.read(name, 0, 10)
        with pytest.raises(BadName):
            await disk.stat(name)
        with pytest.raises(BadName):
            await disk.read_manifest(name)
        with pytest.raises(BadName):
            await disk.delete_archive(name)

    asyncio.run(go())
    assert files_under(tmp_path) == before
    assert (outside / "keep").read_bytes() == b"untouched"


@pytest.mark.parametrize("rec_id", ["../x", "/etc/passwd", f"../{VID}", f"{VID}.0", VID.upper(),
                                    VID[:31], VID + "0", f"{VID}\n", ""], ids=repr)
def test_bad_record_ids_are_refused_and_touch_nothing(tmp_path, rec_id):
    disk = DiskStore("d1", str(tmp_path / "disk")).open()
    before = files_under(tmp_path)

    async def go():
        with pytest.raises(BadName):
            await disk.put_record(rec_id, b"{}")

    asyncio.run(go())
    assert files_under(tmp_path) == before


def test_bad_name_error_is_a_value_error():
    assert issubclass(BadName, ValueError)


def test_reusing_disk_folder_under_another_id_is_refused(tmp_path):
    root = str(tmp_path / "disk")
    DiskStore("d1", root).open().close()
    disk = DiskStore("d1", root).open()  # same id: fine
    with pytest.raises(RuntimeError, match="d1"):
        DiskStore("d2", root).open()
    with pytest.raises(DiskInUse):      # two owners would append to the same packs
        DiskStore("d1", root).open()
    disk.close()
    DiskStore("d1", root).open().close()


def test_open_removes_stale_temp_files(tmp_path):
    root = tmp_path / "disk"
    DiskStore("d1", str(root)).open().close()
    (root / "tmp" / f"{VID}.0.deadbeef").write_bytes(b"half an upload")
    DiskStore("d1", str(root)).open()
    assert files_under(root / "tmp") == []


def test_records_put_and_list_round_trip(disk):
    recs = {VID: b'{"tombstone": true}', VID2: b"\x00\x01binary\xff", "a" * 32: b""}

    async def go():
        for rid, data in recs.items():
            await disk.put_record(rid, data)
        await disk.put_record(VID, b"overwritten")
        got = [item async for item in disk.iter_records()]
        return got

    got = asyncio.run(go())
    want = dict(recs, **{VID: b"overwritten"})
    assert dict(disk.list_records()) == want
    assert dict(got) == want
    assert sorted(r for r, _ in got) == sorted(want)


def test_list_archives_lists_what_was_put(disk):
    archives = {}

    async def go():
        for vid in (VID, VID2):
            for index in (0, 5, 13):
                data, _ = make_archive(vid, index, size=1000 + index, k=10, m=4, seed=index)
                name = f"{vid}.{index}"
                await disk.put_archive(name, chunked(data))
                archives[name] = len(data)
        return [item async for item in disk.iter_archives()]

    via_iter = asyncio.run(go())
    listed = list(disk.list_archives())
    assert dict(listed) == archives
    assert len(listed) == len(archives)
    assert dict(via_iter) == archives


def test_delete_archive(disk, tmp_path):
    archive, _ = make_archive()

    async def go():
        await disk.put_archive(f"{VID}.0", chunked(archive))
        await disk.put_archive(f"{VID}.1", chunked(make_archive(index=1)[0]))
        assert await disk.delete_archive(f"{VID}.0") is True
        assert await disk.delete_archive(f"{VID}.0") is False
        assert await disk.stat(f"{VID}.0") is None
        with pytest.raises(ArchiveMissing):
            await disk.read(f"{VID}.0", 0, 10)
        assert await disk.stat(f"{VID}.1") is not None

    asyncio.run(go())
    assert [n for n, _ in disk.list_archives()] == [f"{VID}.1"]


def test_missing_archive_raises_archive_missing(disk):
    assert issubclass(ArchiveMissing, FileNotFoundError)

    async def go():
        with pytest.raises(ArchiveMissing):
            await disk.read(f"{VID}.0", 0, 10)
        with pytest.raises(FileNotFoundError):
            await disk.read(f"{VID}.0", 0, 10)
        with pytest.raises(ArchiveMissing):
            await disk.read_manifest(f"{VID}.0")
        assert await disk.delete_archive(f"{VID}.0") is False

    asyncio.run(go())


def test_read_ranges_are_clamped_to_the_file(disk):
    archive, _ = make_archive()
    name = f"{VID}.0"

    async def go():
        await disk.put_archive(name, chunked(archive))
        assert await disk.read(name, 0, 1 << 62) == archive
        assert await disk.read(name, 10, 1 << 62) == archive[10:]
        assert await disk.read(name, len(archive) - 3, 100) == archive[-3:]
        assert await disk.read(name, len(archive), 100) == b""
        assert await disk.read(name, len(archive) + 1000, 100) == b""
        assert await disk.read(name, 5, 0) == b""

    asyncio.run(go())


def test_corrupt_committed_archive_manifest_is_detected(either_disk):
    disk = either_disk
    archive, _ = make_archive()
    name = f"{VID}.0"
    asyncio.run(disk.put_archive(name, chunked(archive)))
    path, offset, length = stored_at(disk, name)
    at = offset + length - layout.FOOTER_SIZE - 3  # inside the manifest JSON
    flip(path, at, bytes([archive[length - layout.FOOTER_SIZE - 3] ^ 0xFF]))
    with pytest.raises(CorruptFragment):
        asyncio.run(disk.read_manifest(name))


def test_usage_reports_disk(disk):
    u = disk.usage()
    assert u["disk"] == "d1"
    assert u["total"] >= u["free"] > 0


def test_footer_claiming_oversized_trailer_is_reported_corrupt(either_disk):
    """Rot in the footer's length field must read as corruption, not as an OS error."""
    disk = either_disk
    archive, _ = make_archive()
    name = f"{VID}.0"
    asyncio.run(disk.put_archive(name, chunked(archive)))
    path, offset, length = stored_at(disk, name)
    flip(path, offset + length - layout.FOOTER_SIZE, (10 ** 6).to_bytes(4, "little"))
    with pytest.raises(CorruptFragment):
        asyncio.run(disk.read_manifest(name))


def test_archive_under_another_name_is_refused(disk):
    """A node commits an archive only under the name its header gives it."""
    archive, _ = make_archive(index=0)

    async def go():
        with pytest.raises(CorruptFragment):
            await disk.put_archive(f"{VID}.3", chunked(archive, 1000))
        assert list(disk.list_archives()) == []
        assert os.listdir(os.path.join(disk.root, "tmp")) == []

    asyncio.run(go())


def test_a_disk_without_its_marker_is_refused_unless_initialising(tmp_path):
    """An unmounted disk is an empty folder: a node must not start writing into it."""
    from storage.node.store import MissingDisk
    folder = tmp_path / "mountpoint"
    folder.mkdir()
    with pytest.raises(MissingDisk, match="is the disk mounted"):
        DiskStore("d9", str(folder)).open(initialize=False)
    assert os.listdir(folder) == []
    DiskStore("d9", str(folder)).open(initialize=True).close()
    DiskStore("d9", str(folder)).open(initialize=False).close()  # initialised once: fine from now on


@pytest.mark.parametrize("threshold", [256 << 10, 0], ids=["packed", "file"])
def test_capacity_quota_refuses_like_a_full_disk_and_frees_on_delete(tmp_path, threshold):
    """A write past `capacity` fails with ENOSPC and leaves nothing; deletes and records
    still work on a full disk; a reopened disk counts what it already holds."""
    import errno
    root = str(tmp_path / "disk")
    first, _ = make_archive(VID, size=20_000)
    second, _ = make_archive(VID2, size=20_000, seed=1)
    capacity = len(first) + len(first) // 2
    disk = DiskStore("d1", root, pack_threshold=threshold, capacity=capacity).open()
    asyncio.run(disk.put_archive(f"{VID}.0", chunked(first)))
    before = files_under(root)
    with pytest.raises(OSError) as e:
        asyncio.run(disk.put_archive(f"{VID2}.0", chunked(second)))
    assert e.value.errno == errno.ENOSPC and "quota" in str(e.value)
    assert files_under(root) == before and asyncio.run(disk.stat(f"{VID2}.0")) is None
    assert disk.usage()["capacity"] == capacity and disk.usage()["free"] < len(second)
    asyncio.run(disk.put_record(VID2, b'{"kind":"tombstone"}'))       # never refused
    disk.close()
    disk = DiskStore("d1", root, pack_threshold=threshold, capacity=capacity).open()
    assert disk.usage()["quota_used"] >= len(first)
    assert asyncio.run(disk.delete_archive(f"{VID}.0"))
    asyncio.run(disk.compact())
    asyncio.run(disk.put_archive(f"{VID2}.0", chunked(second)))
    assert asyncio.run(disk.read(f"{VID2}.0", 0, 1 << 30)) == second
    disk.close()


def test_a_new_fan_out_folder_is_made_durable_with_its_parent(tmp_path, monkeypatch):
    """A file renamed into a folder that a crash could lose is not durable: when an archive
    or record creates its fan-out folder, the folder holding it is fsync'd too."""
    disk = DiskStore("d1", str(tmp_path / "disk"), pack_threshold=0).open()
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", spy)
    asyncio.run(disk.put_archive(f"{VID}.0", chunked(make_archive()[0])))
    asyncio.run(disk.put_record(VID2, b'{"kind":"x"}'))
    root = os.path.realpath(disk.root)
    for top, fan in (("archives", VID[30:32]), ("records", VID2[30:32])):
        assert os.path.join(root, top) in synced, f"{top}/ not fsync'd after {top}/{fan} was created"
        assert os.path.join(root, top, fan) in synced
    synced.clear()
    asyncio.run(disk.put_archive(f"{VID}.1", chunked(make_archive(index=1)[0])))
    assert os.path.join(root, "archives") not in synced     # the folder existed: only it is fsync'd


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, counting what is handed to it."""
    def __init__(self):
        super().__init__(2)
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


def _drops_pages(folder: str) -> bool:
    """Whether this filesystem lets POSIX_FADV_DONTNEED drop a clean file's pages (tmpfs
    keeps them), asked of a scratch file: a probe of the pack itself would start the
    kernel's readahead and cache it again before the read under test."""
    path = os.path.join(folder, "drop-probe")
    with open(path, "wb") as f:
        f.write(random.Random(1).randbytes(1 << 16))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    fd = os.open(path, os.O_RDONLY)
    try:
        read_cached(fd, 100, 0)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
        os.unlink(path)


def test_a_cached_packed_archive_is_read_on_the_loop_and_an_uncached_one_in_a_thread(disk):
    """files.read_cached: a small GET's read from the page cache skips the thread hop, and a
    read the page cache cannot serve whole still goes to a thread and returns every byte."""
    archive, _ = make_archive(size=6000, seed=3)
    name = f"{VID}.0"

    async def go():
        pool = CountingExecutor()
        asyncio.get_running_loop().set_default_executor(pool)
        await disk.put_archive(name, chunked(archive))
        pool.calls = 0
        assert await disk.read(name, 0, 1 << 30) == archive
        assert await disk.read(name, 77, 1000) == archive[77:1077]
        hops_cached = pool.calls
        for pack in disk.packs.packs.values():   # written and fsync'd, so clean: the kernel can drop it
            os.posix_fadvise(pack.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert await disk.read(name, 0, 1 << 30) == archive   # first thing after the drop: nothing re-read it
        return hops_cached, pool.calls - hops_cached, _drops_pages(disk.root)

    hops_cached, hops_after_drop, dropped = asyncio.run(go())
    assert hops_cached == 0
    if dropped:   # the filesystem let the pages go (tmpfs keeps them): the read went to a thread
        assert hops_after_drop == 1


def test_read_cached_never_returns_fewer_bytes_than_asked(tmp_path):
    path = tmp_path / "f"
    data = random.Random(9).randbytes(10_000)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.pread(fd, len(data), 0)     # in the page cache now
        assert read_cached(fd, 500, 4000) == data[4000:4500]
        with pytest.raises(BlockingIOError):
            read_cached(fd, 500, 9800)      # 200 bytes left: refused, not cut short
    finally:
        os.close(fd)


def test_an_archive_file_leaves_the_page_cache_once_it_is_synced(disk):
    """files.drop_cached: a large archive's pages are dropped once they are synced (written
    once, read seldom: on the team's VM each page a growing cache took cost more CPU than
    the write itself), and the archive still reads back whole."""
    archive, _ = make_archive(VID2, size=12 << 20, segment_size=1 << 20, seed=21)   # a 3 MiB archive
    name = f"{VID2}.0"
    asyncio.run(disk.put_archive(name, chunked(archive, 300_001)))
    if not _drops_pages(disk.root):
        pytest.skip("this filesystem keeps a clean file's pages (tmpfs)")
    fd = os.open(disk.archive_path(name), os.O_RDONLY)
    try:
        for offset in (0, len(archive) // 2, len(archive) - 4096):
            with pytest.raises(BlockingIOError):
                read_cached(fd, 4096, offset)
    finally:
        os.close(fd)
    assert asyncio.run(disk.read(name, 0, 1 << 30)) == archive


def test_an_archive_of_its_own_is_mapped_as_stored_and_a_packed_one_is_not(either_disk):
    """map_archive (migrate verify --deep) shows the bytes a read returns, a byte changed
    on the disk included; a packed archive is left to reads; a missing one is missing."""
    disk = either_disk
    archive, _ = make_archive(size=20_000)
    name = f"{VID}.0"

    async def go():
        await disk.put_archive(name, chunked(archive))
        return await disk.read(name, 0, 1 << 62)
    assert asyncio.run(go()) == archive
    mapped = disk.map_archive(name)
    if disk.packs.location(name) is not None:
        assert mapped is None
    else:
        assert bytes(mapped) == archive
        path, offset, _ = stored_at(disk, name)
        flip(path, offset + 5000, bytes([archive[5000] ^ 0xFF]))      # rot under the mapping
        assert mapped[5000] == archive[5000] ^ 0xFF and bytes(mapped[:5000]) == archive[:5000]
    with pytest.raises(FileNotFoundError):
        disk.map_archive(f"{VID2}.0")
