"""Disks written before keyed checksums (archive format 1, pack version 1) still work.

tests/fixtures/legacy-v1 holds six disks written by the code of 13a3ccf (see
tests/fixtures/make_legacy_disks.py): an ec:4+2 object in archive files, a replica:3
object in packs and a deleted object's tombstone. Today's code must rebuild the index
from them, read both objects, scrub them clean, and upgrade the packs by compaction;
and an unkeyed archive must never pass for a keyed object."""
from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import struct

import pytest
import xxhash

from storage import layout
from storage.cluster import Cluster
from storage.index.batcher import IndexWriter
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.index.rebuild import rebuild
from storage.node import packformat
from storage.node.store import DiskStore
from storage.objects.service import ObjectService, Policy
from storage.placement.volumes import DiskInfo, build_volumes
from storage.throttle import Throttle
from storage.durability.upgrade import Upgrader
from storage.verify import verify_archive

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "legacy-v1")
SEG = 16 << 10


@pytest.fixture
def legacy(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "disks")
    with open(os.path.join(FIXTURE, "objects.json")) as f:
        expected = json.load(f)
    disks = {f"d{i}": DiskStore(f"d{i}", str(tmp_path / "disks" / f"d{i}"), pack_threshold=4096).open(False)
             for i in range(6)}
    yield tmp_path, disks, expected
    for d in disks.values():
        d.close()


def _versions(disks) -> list[tuple[DiskStore, str, int]]:
    return [(d, name, size) for d in disks.values() for name, size in d.list_archives()]


async def _rebuilt(tmp_path, disks):
    """The legacy disks as a gateway serves them after `pocket index rebuild` from them alone:
    (rebuild report, index, its writer, cluster, object service); the caller closes the
    writer and the index."""
    infos = [DiskInfo(d, f"node{i}", "z1") for i, d in enumerate(disks)]
    volumes = [v for w in (3, 6) for v in build_volumes(infos, w)]
    index = Index(LmdbBackend(str(tmp_path / "index")))
    report = await rebuild(disks, index, volumes)
    writer = IndexWriter(index)
    cluster = Cluster(disks, infos)
    cluster.load_volumes(index, {6, 3})
    policies = {"ec": Policy.parse("ec", "ec:4+2"), "replica": Policy.parse("replica", "replica:3")}
    objects = ObjectService(cluster, index, writer, policies, "ec", "replica", 4096, SEG, timeout=5)
    return report, index, writer, cluster, objects


def test_legacy_disks_rebuild_read_and_scrub_clean(legacy):
    tmp_path, disks, expected = legacy
    assert {packformat.scan_pack(os.path.join(d.packs.folder, f)).fmt
            for d in disks.values() for f in packformat.pack_files(d.packs.folder)} == {1}

    async def go():
        report, index, writer, cluster, objects = await _rebuilt(tmp_path, disks)
        assert (report.objects, report.unreadable) == (2, 0) and report.tombstoned >= 1
        try:
            assert index.get_object("b", "gone") is None
            for key in ("small", "big"):
                seed, size = expected["objects"][key]
                record = index.get_object("b", key)
                assert "archive_format" not in record      # written before keyed checksums
                damage = []
                got = b"".join([c async for c in objects.read(record, 0, size - 1, on_damage=damage.extend)])
                assert got == random.Random(seed).randbytes(size), key
                assert damage == []
            for disk, name, size in _versions(disks):
                verdict = await verify_archive(disk, name, size, Throttle(0))
                assert verdict.problem is None and verdict.legacy, (disk.disk_id, name, verdict.problem)
            records = [json.loads(data) for d in disks.values() for _id, data in d.list_records()]
            assert any(r["kind"] == "tombstone" and r["key"] == "gone" for r in records)
        finally:
            await writer.aclose()
            index.close()
    asyncio.run(go())


def test_compaction_upgrades_legacy_packs_in_place(legacy):
    _tmp, disks, expected = legacy
    packed = {d.disk_id: {n: d.packs.read_archive(n, 0, 1 << 30) for n, _ in d.packs.archive_list()}
              for d in disks.values()}
    records = {d.disk_id: sorted(d.list_records()) for d in disks.values()}
    assert any(packed.values())

    async def go():
        for d in disks.values():
            await d.compact()
    asyncio.run(go())
    for d in disks.values():
        versions = {packformat.scan_pack(os.path.join(d.packs.folder, f)).fmt
                    for f in packformat.pack_files(d.packs.folder)}
        assert versions <= {packformat.PACK_VERSION}, (d.disk_id, versions)
        assert {n: d.packs.read_archive(n, 0, 1 << 30) for n, _ in d.packs.archive_list()} == packed[d.disk_id]
        assert sorted(d.list_records()) == records[d.disk_id]
        for name in packed[d.disk_id]:
            assert d.packs.read_checked(name)[1], name


def test_an_unkeyed_archive_never_passes_for_a_keyed_object(legacy):
    """The downgrade a forger would try: format 1 checksums are only accepted for objects
    whose record says they were written before keyed checksums."""
    _tmp, disks, _expected = legacy
    disk, name, size = next((d, n, s) for d, n, s in _versions(disks) if s > 4096)
    raw = asyncio.run(disk.read(name, 0, size))
    header = layout.ArchiveHeader.unpack(raw, layout.ANY_FORMAT)
    assert header.fmt == layout.LEGACY_FORMAT
    with pytest.raises(layout.CorruptFragment, match="format 1"):
        layout.ArchiveHeader.unpack(raw)
    first = raw[layout.HEADER_SIZE:layout.HEADER_SIZE + layout.RECORD_OVERHEAD + header.block_size]
    assert layout.unpack_record(first, layout.accepted({}))                       # a legacy object: fine
    with pytest.raises(layout.CorruptFragment):
        layout.unpack_record(first, layout.accepted({"archive_format": layout.FORMAT_VERSION}))


def _forge_first_record(disk: DiskStore, name: str) -> bytes:
    """Replace fragment `name`'s first segment with other bytes under a valid xxh3, as
    someone without the secret could; returns the original file."""
    path = disk.archive_path(name)
    with open(path, "rb") as f:
        original = f.read()
    header = layout.ArchiveHeader.unpack(original, layout.ANY_FORMAT)
    fake = random.Random(9).randbytes(header.block_size)
    record = struct.pack("<IQ", len(fake), xxhash.xxh3_64_intdigest(fake)) + fake
    at = layout.HEADER_SIZE
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(record)
    return original


def test_upgrade_rekeys_legacy_objects_and_refuses_one_that_does_not_match_its_etag(legacy):
    tmp_path, disks, expected = legacy

    async def go():
        _, index, writer, cluster, objects = await _rebuilt(tmp_path, disks)
        try:
            big = index.get_object("b", "big")
            first = cluster.volumes[big["volume"]]["disks"][0]
            name = layout.archive_name(big["version_id"], 0)
            original = _forge_first_record(disks[first], name)

            report = await Upgrader(cluster, index).run_once()
            assert (report.upgraded, report.keyed) == (1, 0)
            assert [(row["key"], "ETag" in row["why"]) for row in report.left] == [("big", True)]
            assert "archive_format" not in index.get_object("b", "big")   # nothing sealed over the forgery

            with open(disks[first].archive_path(name), "wb") as f:      # what `pocket repair` would restore
                f.write(original)
            report = await Upgrader(cluster, index).run_once()
            assert (report.upgraded, report.keyed, report.left) == (1, 1, [])
            live = {index.get_object("b", k)["version_id"] for k in ("small", "big")}
            rewritten = [(d, a, n) for d, a, n in _versions(disks) if a.partition(".")[0] in live]
            assert len(rewritten) == 6 + 3     # ("gone"'s archives were left for the scrubber: orphans)
            for disk, arch, size in rewritten:
                verdict = await verify_archive(disk, arch, size, Throttle(0))
                assert verdict.problem is None and not verdict.legacy, (disk.disk_id, arch)
            damage = []
            for key in ("small", "big"):
                seed, size = expected["objects"][key]
                record = index.get_object("b", key)
                assert layout.accepted(record) == layout.STRICT
                got = b"".join([c async for c in objects.read(record, 0, size - 1, on_damage=damage.extend)])
                assert got == random.Random(seed).randbytes(size)
            assert damage == []

            _forge_first_record(disks[first], name)        # forging the keyed object now: caught on read
            record = index.get_object("b", "big")
            got = b"".join([c async for c in objects.read(record, 0, record["size"] - 1, on_damage=damage.extend)])
            assert got == random.Random(expected["objects"]["big"][0]).randbytes(record["size"])
            assert len(damage) == 1
        finally:
            await writer.aclose()
            index.close()
    asyncio.run(go())
