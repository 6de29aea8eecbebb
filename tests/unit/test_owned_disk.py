"""node/owned_disk.py: a gateway worker writes and reads large archives of this host's
disks in the disk folder itself, and sends the rest to the process that owns the disk.

The owner here is a real node app on 127.0.0.1 (test_node_api.Node) owning the folders;
the worker side is an OwnedDisk on the same folders, as open_disks builds it."""
from __future__ import annotations

import asyncio
import os

import pytest

from storage import layout
from storage.config import from_dict
from storage.node.client import DiskUnavailable, RemoteDisk
from storage.node.open_disks import open_disks
from storage.node.owned_disk import OwnedDisk
from storage.node.store import DiskStore

from .test_node_api import SECRET, Node
from .test_store import VID, VID2, chunked, files_under, make_archive

BIG, SMALL = f"{VID}.0", f"{VID2}.0"


def _owned(node: Node, disk_id: str = "d1", **kw) -> OwnedDisk:
    store = node.stores[disk_id]
    return OwnedDisk(disk_id, node.url, SECRET, node.session, node_id="node1",
                     local=DiskStore(disk_id, store.root).beside_owner(), pack_threshold=store.pack_threshold, **kw)


async def _cut(data: bytes, at: int):
    yield data[:at]
    raise ConnectionResetError("the client went away")


def test_large_archives_go_into_the_folder_small_ones_to_the_owner(tmp_path):
    big, _ = make_archive(VID, size=2_000_000, segment_size=65536, seed=1)   # a ~500 kB fragment: over the 256 KiB pack threshold
    small, _ = make_archive(VID2, size=12_000, segment_size=2048, seed=2)
    later, _ = make_archive("ab" * 16, size=1_500_001, segment_size=65536, seed=3)

    async def main():
        async with Node(tmp_path) as node:
            owner, disk = node.stores["d1"], _owned(node)
            assert await disk.put_archive(SMALL, chunked(small)) == len(small)
            assert owner.packs.archive_size(SMALL) == len(small)       # packed by the owner
            assert await disk.put_archive(BIG, chunked(big, 65536)) == len(big)
            assert owner.packs.archive_size(BIG) is None
            assert os.path.join("archives", VID[30:32], BIG) in files_under(owner.root), files_under(owner.root)
            assert files_under(os.path.join(owner.root, "tmp")) == []
            # the owner reads what the worker wrote, and the worker reads both kinds
            assert await owner.read(BIG, 0, 1 << 30) == big
            assert await disk.read(BIG, 1000, 70_000) == big[1000:71_000]
            assert await disk.read(SMALL, 0, 1 << 30) == small
            stream = await disk.stream_range(BIG, 64, len(big))
            pieces = [await stream.take(100_000) for _ in range(6)]
            assert stream.done and b"".join(pieces) == big[64:]
            stream.close()
            assert await disk.stat(BIG) == len(big)

            # with the owner gone, large archives are still written and read; small ones are not
            await node.runner.cleanup()
            assert await disk.put_archive(f"{'ab' * 16}.0", chunked(later, 65536)) \
                == len(later)
            assert await disk.read(f"{'ab' * 16}.0", 0, 1 << 30) == later
            with pytest.raises(DiskUnavailable):
                await disk.put_archive(f"{'cd' * 16}.0", chunked(small))
    asyncio.run(main())


def test_a_large_archive_cut_short_or_unfinished_leaves_nothing(tmp_path):
    big, _ = make_archive(VID, size=2_000_000, segment_size=65536, seed=4)

    async def main():
        async with Node(tmp_path) as node:
            owner, disk = node.stores["d1"], _owned(node)
            with pytest.raises(ConnectionResetError):
                await disk.put_archive(BIG, _cut(big, 300_000))
            with pytest.raises(layout.CorruptFragment):      # no footer: an unfinished upload
                await disk.put_archive(BIG, chunked(big[:-5], 65536))
            assert await owner.stat(BIG) is None and await disk.stat(BIG) is None
            assert files_under(os.path.join(owner.root, "archives")) == []
            assert files_under(os.path.join(owner.root, "tmp")) == []
    asyncio.run(main())


def test_only_quota_free_disks_of_an_owned_node_are_written_directly(tmp_path):
    """A capacity quota is counted by the process that writes: only the owner may."""
    cfg = from_dict({"cluster_secret": "s" * 40, "nodes": [
        {"id": "n1", "disks": [{"id": "free", "path": "a"}, {"id": "quota", "path": "b", "capacity": 10 << 30}]},
        {"id": "n2", "url": "http://127.0.0.1:1", "disks": [{"id": "far", "path": "c"}]}]}, str(tmp_path))
    cfg.nodes[0].url, cfg.nodes[0].owned = "http://127.0.0.1:2", True     # as cli/serve.py's _disk_owner does

    async def main():
        disks, _ = open_disks(cfg, None)
        return {d: type(disk) for d, disk in disks.items()}
    assert asyncio.run(main()) == {"free": OwnedDisk, "quota": RemoteDisk, "far": RemoteDisk}


def test_mapped_reads_give_the_files_bytes_and_outlive_a_replaced_file(tmp_path):
    """A repair's reads of archive files as views of the page cache (archives.mapped_read):
    the same bytes as a copy at any offset and length, clamped at the end, short reads
    copied, packed archives still asked of the owner; a view taken before its file was
    replaced (a rename over it) or removed still holds the bytes it was taken of."""
    big, _ = make_archive(VID, size=2_000_000, segment_size=65536, seed=5)
    small, _ = make_archive(VID2, size=12_000, segment_size=2048, seed=6)
    other, _ = make_archive(VID, size=2_000_000, segment_size=65536, seed=7)
    assert big != other

    async def main():
        async with Node(tmp_path) as node:
            owner, disk = node.stores["d1"], _owned(node, mapped_reads=True)
            assert await disk.put_archive(BIG, chunked(big, 65536)) == len(big)
            assert await disk.put_archive(SMALL, chunked(small)) == len(small)
            for offset, length in [(0, 1 << 30), (1, 300_001), (4095, 70_000), (4097, 1 << 62), (100, 5000),
                                   (len(big) - 70_000, 1 << 20), (len(big), 10)]:
                got = await disk.read(BIG, offset, length)
                assert bytes(got) == big[offset:offset + length], (offset, length)
            assert isinstance(await disk.read(BIG, 3, 1 << 20), memoryview)     # mapped, not copied
            assert isinstance(await disk.read(BIG, 3, 1000), bytes)             # too short to map
            assert bytes(await disk.read(SMALL, 0, 1 << 30)) == small          # packed: the owner's
            stream = await disk.stream_range(BIG, 64, len(big))
            pieces = [bytes(await stream.take(300_000)) for _ in range(7)]
            assert stream.done and b"".join(pieces) == big[64:]
            stream.close()

            held = await disk.read(BIG, 10, 1 << 20)
            path = owner.archive_path(BIG)
            with open(path + ".new", "wb") as f:
                f.write(other)
            os.rename(path + ".new", path)
            assert bytes(held) == big[10:10 + (1 << 20)]
            assert bytes(await disk.read(BIG, 10, 1 << 20)) == other[10:10 + (1 << 20)]
            held = await disk.read(BIG, 0, 1 << 30)
            os.unlink(path)
            assert bytes(held) == other
            with pytest.raises(FileNotFoundError):
                await disk.read(BIG, 0, 1 << 30)
    asyncio.run(main())


def test_a_file_that_cannot_be_mapped_is_copied(tmp_path, monkeypatch):
    """A folder on a file system that maps no files (mmap: ENODEV) is read as before,
    not reported unreadable (which would mark its disk down)."""
    import errno
    import mmap
    big, _ = make_archive(VID, size=2_000_000, segment_size=65536, seed=8)

    def refuse(*_args, **_kw):
        raise OSError(errno.ENODEV, "no mmap here")

    async def main():
        async with Node(tmp_path) as node:
            disk = _owned(node, mapped_reads=True)
            assert await disk.put_archive(BIG, chunked(big, 65536)) == len(big)
            monkeypatch.setattr(mmap, "mmap", refuse)
            got = await disk.read(BIG, 5, 1 << 20)
            assert isinstance(got, bytes) and got == big[5:5 + (1 << 20)]
    asyncio.run(main())
