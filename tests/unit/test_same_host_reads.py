"""A node's disk on the gateway's host (node/same_host.py) is read in its folder: archive
files and pack records (node/pack_mirror.py), never wrong bytes.

The node is a real node app on 127.0.0.1 (test_node_api.Node) owning its folders; the
gateway side is an OwnedDisk(trusted=False) on the same folders, as open_disks builds it
for a node whose disk path exists here. Every archive is unique at every offset
(test_store.make_archive, a seed each)."""
from __future__ import annotations

import asyncio
import os
import shutil

import aiohttp
import pytest

from storage.config import from_dict
from storage.node import same_host
from storage.node.client import DiskUnavailable, RemoteDisk
from storage.node.open_disks import open_disks
from storage.node.owned_disk import OwnedDisk
from storage.node.packformat import ARCHIVE, RECORD_HEADER_SIZE, pack_files
from storage.node.store import DiskStore

from .test_node_api import SECRET, Node
from .test_store import chunked, files_under, make_archive

VIDS = [f"{i:02x}" * 16 for i in range(1, 9)]


def _near(node: Node, root: str | None = None, disk_id: str = "d1", session=None) -> OwnedDisk:
    root = root or node.stores[disk_id].root
    return OwnedDisk(disk_id, node.url, SECRET, session or node.session, node_id="node1",
                     local=DiskStore(disk_id, root).beside_owner(), pack_threshold=node.stores[disk_id].pack_threshold,
                     trusted=False)


def _counting_session(asked: list) -> aiohttp.ClientSession:
    """A session that notes every request but the heartbeat's, to tell direct reads apart."""
    trace = aiohttp.TraceConfig()

    async def start(_session, _ctx, params):
        if "/v1/health" not in str(params.url):
            asked.append(str(params.url))
    trace.on_request_start.append(start)
    return aiohttp.ClientSession(trace_configs=[trace])


def _archives(count: int, size: int = 12_000) -> dict[str, bytes]:
    """Small (packed) archives of the same length, unique bytes each."""
    return {f"{VIDS[i]}.0": make_archive(VIDS[i], size=size, segment_size=2048, seed=100 + i)[0] for i in range(count)}


async def _put(owner: DiskStore, archives: dict[str, bytes]) -> None:
    for name, data in archives.items():
        assert await owner.put_archive(name, chunked(data)) == len(data)


async def _confirmed(node: Node, archives: dict[str, bytes]) -> tuple[DiskStore, OwnedDisk]:
    """The node's store holding `archives`, and a disk reading it here, its packs read."""
    owner = node.stores["d1"]
    await _put(owner, archives)
    disk = _near(node)
    await disk.health()
    assert disk.direct
    await disk.mirror.catch_up()
    return owner, disk


def test_reads_go_direct_only_once_the_node_says_its_folder_is_this_one(tmp_path):
    archives = _archives(3)

    async def main():
        asked: list = []
        async with Node(tmp_path) as node, _counting_session(asked) as session:
            owner = node.stores["d1"]
            await _put(owner, archives)
            disk = _near(node, session=session)
            assert not disk.direct
            first = next(iter(archives))
            assert await disk.read(first, 0, 1 << 30) == archives[first]
            assert len(asked) == 1              # not confirmed yet: the node answered
            await disk.health()
            assert disk.direct
            await disk.mirror.catch_up()               # the first, which health() started
            for name, data in archives.items():
                assert await disk.read(name, 0, 1 << 30) == data
                assert await disk.read(name, 777, 5000) == data[777:5777]
                stream = await disk.stream_range(name, 64, len(data))
                assert await stream.take(1000) + await stream.take(1 << 20) == data[64:] and stream.done
                stream.close()
            assert len(asked) == 1              # every one of those read in the folder
            # written after the last catch-up: found by catching up, still without the node
            later = {f"{VIDS[5]}.0": make_archive(VIDS[5], size=12_000, segment_size=2048, seed=7)[0]}
            await _put(owner, later)
            assert await disk.read(f"{VIDS[5]}.0", 0, 1 << 30) == later[f"{VIDS[5]}.0"]
            assert len(asked) == 1
            # the node stops answering: its disk is no longer read here, from the next heartbeat
            await node.runner.cleanup()
            with pytest.raises(Exception):
                await disk.health()
            assert not disk.direct
    asyncio.run(main())


def test_a_folder_that_is_not_the_nodes_is_never_read(tmp_path):
    """The same path on another host, or a copy: its device and inode are not the node's."""
    archives = _archives(2)

    async def main():
        async with Node(tmp_path) as node:
            owner = node.stores["d1"]
            await _put(owner, archives)
            copy = str(tmp_path / "copy")
            shutil.copytree(owner.root, copy)
            first = next(iter(archives))
            owner_bytes = archives[first]
            await owner.delete_archive(first)       # the copy still holds it; the node does not
            disk = _near(node, copy)
            await disk.health()
            assert not disk.direct
            with pytest.raises(FileNotFoundError):
                await disk.read(first, 0, 1 << 30)
            name, data = list(archives.items())[1]
            assert await disk.read(name, 0, 1 << 30) == data
            assert owner_bytes != data
            where = owner.usage()["where"]
            assert same_host.matches(where, owner.root) and not same_host.matches(where, copy)
            assert not same_host.matches({**where, "host": "another-boot"}, owner.root)
            assert not same_host.matches({**where, "uid": where["uid"] + 1}, owner.root)
    asyncio.run(main())


def test_a_compaction_between_catch_up_and_read_gives_the_right_bytes(tmp_path):
    archives = _archives(8)

    async def main():
        async with Node(tmp_path) as node:
            owner, disk = await _confirmed(node, archives)
            names = list(archives)
            assert await disk.read(names[0], 0, 1 << 30) == archives[names[0]]   # the map: every name
            packs_before = pack_files(owner.packs.folder)
            for name in names[:6]:
                await owner.delete_archive(name)
            report = await owner.compact(min_live=0.5)
            assert report["packs"] >= 1 and pack_files(owner.packs.folder) != packs_before
            # the map still points into the pack compacted away: read through the descriptor
            # held, or found again in the pack the live records moved to
            for name in names[6:]:
                assert await disk.read(name, 0, 1 << 30) == archives[name]
                assert await disk.read(name, 100, 3000) == archives[name][100:3100]
            await disk.mirror.catch_up()
            assert not {p.path for p in disk.mirror.packs.packs.values()} & {
                os.path.join(owner.packs.folder, p) for p in packs_before}   # let go of
            for name in names[:6]:
                with pytest.raises(FileNotFoundError):
                    await disk.read(name, 0, 1 << 30)
            for name in names[6:]:
                assert await disk.read(name, 0, 1 << 30) == archives[name]
    asyncio.run(main())


def test_a_place_that_now_holds_another_record_is_never_read_as_this_one(tmp_path):
    """A node restarted after a crash cuts the pack's torn tail and writes there again: the
    map's place for a record cut off now holds another record of the same length."""
    cut, kept = _archives(2).items()

    async def main():
        async with Node(tmp_path) as node:
            owner = node.stores["d1"]
            await _put(owner, dict([kept]))
            end = owner.packs.head.size
            await _put(owner, dict([cut]))
            disk = _near(node)
            await disk.health()
            await disk.mirror.catch_up()
            assert await disk.read(cut[0], 0, 1 << 30) == cut[1]
            # the crash: `cut` was never acknowledged, and the restart truncates it away
            path = owner.packs.head.path
            owner.close()
            os.truncate(path, end)
            node.stores["d1"] = owner = DiskStore("d1", owner.root).open()
            node.runner.app["stores"]["d1"] = owner
            other_vid = VIDS[7]
            other = make_archive(other_vid, size=12_000, segment_size=2048, seed=999)[0]
            assert len(other) == len(cut[1])
            await _put(owner, {f"{other_vid}.0": other})
            assert owner.packs.location(f"{other_vid}.0")[1] == end + RECORD_HEADER_SIZE   # where `cut` was
            with pytest.raises(FileNotFoundError):     # not the other record's bytes
                await disk.read(cut[0], 0, 1 << 30)
            assert await disk.read(f"{other_vid}.0", 0, 1 << 30) == other
            assert await disk.read(kept[0], 0, 1 << 30) == kept[1]
    asyncio.run(main())


def test_a_node_disk_whose_path_exists_here_may_be_read_here(tmp_path):
    os.makedirs(tmp_path / "here")
    cfg = from_dict({"cluster_secret": "s" * 40, "nodes": [
        {"id": "n1", "url": "http://127.0.0.1:1", "disks": [{"id": "here", "path": "here"}]},
        {"id": "n2", "url": "http://127.0.0.1:2", "disks": [{"id": "far", "path": "far"}]},
        {"id": "n3", "url": "http://127.0.0.1:3", "disks": [{"id": "quota", "path": "here", "capacity": 1 << 30}]}]},
        str(tmp_path))

    async def main():
        disks, _ = open_disks(cfg, None)
        assert not disks["here"].direct     # until its node's health answer says so
        return {d: type(disk) for d, disk in disks.items()}
    assert asyncio.run(main()) == {"here": OwnedDisk, "far": RemoteDisk, "quota": RemoteDisk}


def test_a_disk_wiped_and_laid_out_again_by_its_node_is_written_here_again(tmp_path):
    """A replacement drive with the same id: the folders this process made before are gone."""
    one, two = "01" * 15 + "ab", "02" * 15 + "ab"      # the same archives/ab/ folder
    big1 = make_archive(one, size=2_000_000, segment_size=65536, seed=11)[0]
    big2 = make_archive(two, size=2_000_000, segment_size=65536, seed=12)[0]

    async def main():
        async with Node(tmp_path) as node:
            owner = node.stores["d1"]
            disk = _near(node)
            await disk.health()
            assert await disk.put_archive(f"{one}.0", chunked(big1, 65536)) == len(big1)
            assert owner.packs.archive_size(f"{one}.0") is None and await owner.read(f"{one}.0", 0, 1 << 30) == big1
            owner.close()
            shutil.rmtree(owner.root)
            node.stores["d1"] = owner = DiskStore("d1", owner.root).open()
            node.runner.app["stores"]["d1"] = owner
            await disk.health()
            assert disk.direct                         # the new folder is the node's too
            assert await disk.put_archive(f"{two}.0", chunked(big2, 65536)) == len(big2)
            assert await owner.read(f"{two}.0", 0, 1 << 30) == big2
            assert await disk.read(f"{two}.0", 5, 100_000) == big2[5:100_005]
            with pytest.raises(FileNotFoundError):
                await disk.read(f"{one}.0", 0, 1 << 30)
    asyncio.run(main())


def test_an_archive_rewritten_by_its_owner_is_read_as_rewritten(tmp_path):
    """Rot in a packed copy, then repair's byte-for-byte rewrite: never the rotten copy again."""
    archives = _archives(2)
    name, good = next(iter(archives.items()))

    async def main():
        async with Node(tmp_path) as node:
            owner, disk = await _confirmed(node, archives)
            assert await disk.read(name, 0, 1 << 30) == good
            path, at, length = owner.packs.location(name)
            with open(path, "r+b") as f:             # rot in the middle of the payload
                f.seek(at + length // 2)
                byte = f.read(1)
                f.seek(at + length // 2)
                f.write(bytes([byte[0] ^ 0xFF]))
            rotten = await disk.read(name, 0, 1 << 30)
            assert rotten != good and len(rotten) == len(good)
            await owner.packs.put(ARCHIVE, name, good)   # what repair does through the node
            assert await disk.read(name, 0, 1 << 30) == good
            assert await disk.read(name, 1000, 2000) == good[1000:3000]
    asyncio.run(main())


def test_no_archive_lands_on_the_disk_of_a_node_that_died_since_its_last_answer(tmp_path):
    big = make_archive("03" * 16, size=2_000_000, segment_size=65536, seed=13)[0]

    async def main():
        async with Node(tmp_path) as node:
            owner = node.stores["d1"]
            disk = _near(node)
            await disk.health()
            assert disk.direct
            owner.close()                   # the node dies (its lock goes with it) ...
            await node.runner.cleanup()
            assert disk.direct              # ... before the next heartbeat noticed
            with pytest.raises(DiskUnavailable):
                await disk.put_archive(f"{'03' * 16}.0", chunked(big, 65536))
            assert files_under(os.path.join(owner.root, "archives")) == []
    asyncio.run(main())
