"""A disk attached with `lazy_packs` (`pocket migrate verify --deep`, node/deferred_packs.py):
large archive files are read without scanning the packs, and any name that may be packed
scans them first, so a packed archive, or a packed twin of a small file, reads as the
owner reads it."""
from __future__ import annotations

import asyncio
import os

import pytest

from storage.node.packs import PacksOwnedElsewhere
from storage.node.store import DiskStore

from .test_packs import open_disk, put, read_all

THRESHOLD = 8000


def _tool(owner: DiskStore) -> DiskStore:
    return DiskStore(owner.disk_id, owner.root, pack_threshold=THRESHOLD).attach(lazy_packs=True)


def test_large_files_are_read_unscanned_and_packed_archives_after_a_scan(tmp_path):
    async def go():
        owner = open_disk(tmp_path, pack_threshold=THRESHOLD)
        small, small_data = await put(owner, 1)                  # 3,000 bytes: packed
        large, large_data = await put(owner, 2, size=20_000)     # a file of its own
        assert owner.packs.archive_size(small) and owner.packs.archive_size(large) is None
        tool = _tool(owner)
        try:
            assert await read_all(tool, large) == large_data and await tool.stat(large) == len(large_data)
            assert tool.packs.stats()["records"] == 0            # nothing scanned yet
            assert await read_all(tool, small) == small_data and await tool.stat(small) == len(small_data)
            assert tool.packs.stats()["archives"] == 1
            with pytest.raises(PacksOwnedElsewhere):             # packs stay the owner's
                await tool.delete_archive(small)
            assert dict(tool.list_archives()) == {small: len(small_data), large: len(large_data)}
        finally:
            tool.close()
            owner.close()
    asyncio.run(go())


def test_a_packed_twin_of_a_small_file_wins_as_for_the_owner(tmp_path):
    """The packed copy is the newer one (store.py): a file small enough to have been packed
    does not stand for the archive until the packs are known."""
    async def go():
        owner = open_disk(tmp_path, pack_threshold=THRESHOLD)
        name, data = await put(owner, 3)
        path = owner.archive_path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:                              # an older, rotten file of it
            f.write(bytes(b ^ 0xFF for b in data))
        tool = _tool(owner)
        try:
            assert await read_all(tool, name) == data and await read_all(owner, name) == data
        finally:
            tool.close()
            owner.close()
    asyncio.run(go())
