"""Pack files (storage/node/packs.py) behind DiskStore: group commit, rescans, torn tails,
corruption, deletes and compaction. Fast: no processes, small packs."""
from __future__ import annotations

import asyncio
import os
import random
import struct

import pytest

from storage import layout
from storage.layout import CorruptFragment, Geometry
from storage.node import packformat as fmt
from storage.node.store import ArchiveMissing, DiskStore

from .test_store import make_archive


def vid(i: int) -> str:
    return f"{i:032x}"


def archive(i: int, size: int = 3000, index: int = 0, seed: int | None = None) -> tuple[str, bytes]:
    data, _ = make_archive(vid(i), index, size=size, segment_size=2048, k=1, m=2,
                           seed=i if seed is None else seed)
    return f"{vid(i)}.{index}", data


async def one_chunk(data: bytes):
    yield data


async def chunked(data: bytes, step: int = 1000):
    for i in range(0, len(data), step):
        await asyncio.sleep(0)
        yield data[i:i + step]


def open_disk(root, **kw) -> DiskStore:
    return DiskStore("d1", str(root), **kw).open()


def reopen(disk: DiskStore, **kw) -> DiskStore:
    disk.close()
    return DiskStore(disk.disk_id, disk.root, pack_threshold=disk.pack_threshold,
                     pack_size=disk.packs.pack_size, **kw).open()


def pack_paths(disk: DiskStore) -> list[str]:
    return [os.path.join(disk.packs.folder, n) for n in fmt.pack_files(disk.packs.folder)]


async def put(disk: DiskStore, i: int, **kw) -> tuple[str, bytes]:
    name, data = archive(i, **kw)
    await disk.put_archive(name, one_chunk(data))
    return name, data


async def read_all(disk: DiskStore, name: str) -> bytes:
    return await disk.read(name, 0, 1 << 62)


def assert_holds(disk: DiskStore, want: dict[str, bytes]) -> None:
    async def go():
        for name, data in want.items():
            assert await read_all(disk, name) == data, name
            assert await disk.stat(name) == len(data)
    asyncio.run(go())
    assert dict(disk.list_archives()) == {n: len(d) for n, d in want.items()}


# group commit ------------------------------------------------------------------------------
def test_concurrent_small_puts_share_fsyncs(tmp_path, monkeypatch):
    disk = open_disk(tmp_path / "d")
    syncs = []
    for fn in ("fsync", "fdatasync"):
        real = getattr(os, fn)
        monkeypatch.setattr(os, fn, lambda fd, real=real, fn=fn: (syncs.append(fn), real(fd))[1])
    want = dict(archive(i, size=500 + 37 * i) for i in range(200))

    async def go():
        sizes = await asyncio.gather(*(disk.put_archive(n, chunked(d)) for n, d in want.items()))
        assert sizes == [len(d) for d in want.values()]

    asyncio.run(go())
    # 200 acknowledged puts: every one fsync'd, but most fsyncs covered many of them
    assert 1 <= syncs.count("fdatasync") == disk.packs.syncs < 40, syncs
    assert len(syncs) < 50, syncs  # + creating the pack: its fsync and the folder's
    assert disk.packs.appends == 200
    assert os.listdir(os.path.join(disk.root, "archives")) == []
    assert len(pack_paths(disk)) == 1
    assert_holds(disk, want)
    assert_holds(reopen(disk), want)


def test_appends_made_together_reach_the_writer_as_one_batch(tmp_path):
    """What one loop iteration submits is handed to the idle writer with one wake-up, so
    it shares one write and one fsync, however fast the writer wakes for the first."""
    disk = open_disk(tmp_path / "d")
    want = {vid(i): random.Random(i).randbytes(300 + i) for i in range(50)}

    async def go():
        await asyncio.gather(*(disk.put_record(r, d) for r, d in want.items()))

    asyncio.run(go())
    assert (disk.packs.appends, disk.packs.batches, disk.packs.syncs) == (50, 1, 1)
    for rec_id, data in want.items():
        assert disk.packs.read_record(rec_id) == data
    again = reopen(disk)
    assert all(again.packs.read_record(r) == d for r, d in want.items())


def test_an_append_submitted_as_the_packs_close_is_written_before_they_close(tmp_path):
    disk = open_disk(tmp_path / "d")

    async def go():
        late = asyncio.ensure_future(disk.put_record(vid(1), b"just in time"))
        await asyncio.sleep(0)          # submitted: staged for the writer, not yet handed over
        disk.packs.close()              # finishes what is queued, this append too
        await asyncio.wait_for(late, 5)

    asyncio.run(go())
    assert reopen(disk).packs.read_record(vid(1)) == b"just in time"


def test_nothing_is_acknowledged_before_its_fsync(tmp_path, monkeypatch):
    disk = open_disk(tmp_path / "d")
    name, data = archive(1)
    order = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (order.append("fsync"), real(fd))[1])

    async def go():
        await disk.put_archive(name, one_chunk(data))
        order.append("ack")
        assert await disk.delete_archive(name) is True
        order.append("ack")

    asyncio.run(go())
    assert order == ["fsync", "ack", "fsync", "ack"]


def test_records_are_packed_and_listed(tmp_path):
    disk = open_disk(tmp_path / "d")
    want = {vid(i): f'{{"kind":"tombstone","n":{i}}}'.encode() for i in range(50)}

    async def go():
        await asyncio.gather(*(disk.put_record(r, d) for r, d in want.items()))
        await disk.put_record(vid(7), b"newer")

    asyncio.run(go())
    want[vid(7)] = b"newer"
    assert os.listdir(os.path.join(disk.root, "records")) == []
    assert dict(disk.list_records()) == want
    assert disk.packs.syncs < 50
    assert dict(reopen(disk).list_records()) == want


# deletes and overwrites --------------------------------------------------------------------
def test_a_delete_that_needs_no_fsync_is_acknowledged_before_one_and_synced_after(tmp_path, monkeypatch):
    """durable=False (an archive of a version a durable record already dropped): its batch
    is written without an fsync, so it is acknowledged at once; the writer, out of work,
    then syncs it, and it stays deleted after a reopen."""
    import threading
    disk = open_disk(tmp_path / "d")
    kept, gone = dict(archive(i) for i in range(2)), f"{vid(2)}.0"
    asyncio.run(put(disk, 2))
    order, acked = [], threading.Event()
    real = os.fdatasync

    def fdatasync(fd):
        acked.wait(5)   # an fsync the delete waited for would hold its acknowledgement back 5 s
        real(fd)
        order.append("fsync")
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    syncs = disk.packs.syncs

    async def go():
        assert await disk.delete_archive(gone, durable=False) is True
        order.append("ack")
        acked.set()
        for n, d in kept.items():   # durable again: acknowledged after their fsync
            await disk.put_archive(n, one_chunk(d))

    asyncio.run(go())
    assert order[:2] == ["ack", "fsync"] and disk.packs.syncs >= syncs + 2
    assert_holds(disk, kept)
    monkeypatch.setattr(os, "fdatasync", real)
    assert_holds(reopen(disk), kept)


def test_delete_then_reopen_stays_deleted(tmp_path):
    disk = open_disk(tmp_path / "d")
    want = dict(archive(i) for i in range(5))
    gone = f"{vid(2)}.0"

    async def go():
        for n, d in want.items():
            await disk.put_archive(n, one_chunk(d))
        assert await disk.delete_archive(gone) is True
        assert await disk.delete_archive(gone) is False
        with pytest.raises(ArchiveMissing):
            await disk.read(gone, 0, 10)
        with pytest.raises(ArchiveMissing):
            await disk.read_manifest(gone)

    asyncio.run(go())
    del want[gone]
    assert_holds(disk, want)
    disk = reopen(disk)
    assert_holds(disk, want)
    assert asyncio.run(disk.stat(gone)) is None
    assert gone not in fmt.live_archives(disk.packs.folder)


@pytest.mark.parametrize("pack_size", [64 << 20, 8 << 10], ids=["one-pack", "rolling-packs"])
def test_overwrite_newest_wins_after_reopen(tmp_path, pack_size):
    disk = open_disk(tmp_path / "d", pack_size=pack_size)
    name, first = archive(1, seed=1)
    _, second = archive(1, size=5000, seed=2)
    _, third = archive(1, size=4000, seed=3)

    async def go():
        await disk.put_archive(name, one_chunk(first))
        for i in range(2, 6):  # fill, so that with small packs the versions land in different packs
            await put(disk, i)
        await disk.put_archive(name, one_chunk(second))
        assert await read_all(disk, name) == second
        await disk.delete_archive(name)
        await disk.put_archive(name, one_chunk(third))

    asyncio.run(go())
    if pack_size < 1 << 20:
        assert len(pack_paths(disk)) > 1
    assert asyncio.run(read_all(disk, name)) == third
    disk = reopen(disk)
    assert asyncio.run(read_all(disk, name)) == third
    assert asyncio.run(disk.read_manifest(name))["key"] == "k-3"


def test_delete_of_a_put_still_in_flight_wins(tmp_path):
    """An aborted upload deletes what it started; a put queued but not yet fsync'd counts."""
    disk = open_disk(tmp_path / "d")
    name, data = archive(1)

    async def go():
        put = asyncio.ensure_future(disk.put_archive(name, one_chunk(data)))
        await asyncio.sleep(0)  # the put is queued for the writer, not yet applied
        deleted = await disk.delete_archive(name)
        await put
        return deleted

    assert asyncio.run(go()) is True
    assert asyncio.run(disk.stat(name)) is None
    assert asyncio.run(reopen(disk).stat(name)) is None


def test_small_and_large_versions_of_one_name_supersede_each_other(tmp_path):
    disk = open_disk(tmp_path / "d")
    name, small = archive(1)
    _, large = archive(1, size=600 << 10, seed=9)
    _, small2 = archive(1, size=2000, seed=10)
    file_path = os.path.join(disk.root, "archives", name[30:32], name)

    async def go():
        await disk.put_archive(name, one_chunk(small))
        await disk.put_archive(name, chunked(large, 64 << 10))
        assert os.path.exists(file_path) and disk.packs.location(name) is None
        assert await read_all(disk, name) == large
        await disk.put_archive(name, one_chunk(small2))
        assert await read_all(disk, name) == small2  # the packed copy shadows the older file
        assert dict(disk.list_archives()) == {name: len(small2)}

    asyncio.run(go())
    disk = reopen(disk)
    assert asyncio.run(read_all(disk, name)) == small2
    assert asyncio.run(disk.delete_archive(name)) is True  # both copies go
    assert not os.path.exists(file_path) and asyncio.run(disk.stat(name)) is None
    assert asyncio.run(reopen(disk).stat(name)) is None


def test_large_archives_still_get_their_own_files(tmp_path):
    at_limit = archive(1, size=40_000)
    over = archive(2, size=40_001)
    disk = open_disk(tmp_path / "d", pack_threshold=len(at_limit[1]))
    assert len(over[1]) > disk.pack_threshold
    big = archive(3, size=1 << 20)

    async def go():
        for name, data in (at_limit, over, big):
            assert await disk.put_archive(name, chunked(data, 4096)) == len(data)

    asyncio.run(go())
    assert disk.packs.location(at_limit[0]) is not None
    for name, _ in (over, big):
        assert disk.packs.location(name) is None
        assert os.listdir(os.path.join(disk.root, "archives", name[30:32])) == [name]
    want = dict([at_limit, over, big])
    assert_holds(disk, want)
    assert_holds(reopen(disk), want)


# crashes and corruption --------------------------------------------------------------------
def _record(disk: DiskStore, name: str, payload: bytes) -> bytes:
    """A complete record as the writer would append it to the disk's newest pack."""
    with open(pack_paths(disk)[-1], "rb") as f:
        _seq, salt, _version = fmt.parse_pack_header(f.read(fmt.PACK_HEADER_SIZE))
    return fmt.record_header(fmt.ARCHIVE, name, len(payload), fmt.payload_sum(payload), salt) + payload


@pytest.mark.parametrize("tail", ["garbage", "zeros", "half-header", "header-only", "cut-payload",
                                  "bad-payload"])
def test_torn_tail_is_dropped_and_everything_before_kept(tmp_path, tail):
    disk = open_disk(tmp_path / "d")
    want = dict(archive(i) for i in range(10))

    async def go():
        await asyncio.gather(*(disk.put_archive(n, one_chunk(d)) for n, d in want.items()))

    asyncio.run(go())
    path = pack_paths(disk)[-1]
    acknowledged = os.path.getsize(path)
    name, data = archive(99)
    whole = _record(disk, name, data)
    torn = {
        "garbage": random.Random(1).randbytes(5000),
        "zeros": bytes(8192),
        "half-header": whole[:fmt.RECORD_HEADER_SIZE // 2],
        "header-only": whole[:fmt.RECORD_HEADER_SIZE],
        "cut-payload": whole[:len(whole) - 100],
        "bad-payload": whole[:-1] + bytes([whole[-1] ^ 1]),
    }[tail]
    disk.close()
    with open(path, "ab") as f:
        f.write(torn)
    disk = reopen(disk)
    assert disk.packs.report.truncated_bytes == len(torn)
    assert os.path.getsize(path) == acknowledged
    assert_holds(disk, want)
    assert asyncio.run(disk.stat(name)) is None
    # the disk carries on appending where the good data ends
    asyncio.run(disk.put_archive(name, one_chunk(data)))
    want[name] = data
    assert_holds(reopen(disk), want)


def test_whole_record_appended_without_fsync_is_kept(tmp_path):
    """A complete record the crash did not tear is as good as acknowledged: no harm in keeping it."""
    disk = open_disk(tmp_path / "d")
    asyncio.run(put(disk, 1))
    name, data = archive(2)
    record = _record(disk, name, data)
    disk.close()
    with open(pack_paths(disk)[-1], "ab") as f:
        f.write(record)
    disk = reopen(disk)
    assert disk.packs.report.truncated_bytes == 0
    assert asyncio.run(read_all(disk, name)) == data


def test_flipped_bit_in_packed_payload_is_caught_by_archive_checksums(tmp_path):
    disk = open_disk(tmp_path / "d")
    names = [archive(i, size=6000) for i in range(3)]

    async def go():
        for n, d in names:
            await disk.put_archive(n, one_chunk(d))

    asyncio.run(go())
    victim = names[1][0]
    path, offset, length = disk.packs.location(victim)
    geo = Geometry(6000, 2048, 1)
    seg_off, seg_len = geo.span(1, 1)
    with open(path, "r+b") as f:
        f.seek(offset + seg_off + layout.RECORD_OVERHEAD + 10)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x04]))

    async def check(disk):
        raw = await disk.read(victim, seg_off, seg_len)
        with pytest.raises(CorruptFragment):
            layout.unpack_record(raw)
        good = await disk.read(victim, *geo.span(0, 0))
        assert layout.unpack_record(good)
        for n, d in (names[0], names[2]):
            assert await read_all(disk, n) == d

    asyncio.run(check(disk))
    disk = reopen(disk)  # an acknowledged record is not the tail, so a rescan keeps it for repair
    assert disk.packs.report.truncated_bytes == 0
    asyncio.run(check(disk))


@pytest.mark.parametrize("where", ["newest-pack", "older-pack"])
def test_flipped_bit_in_record_header_is_detected_at_scan(tmp_path, where):
    disk = open_disk(tmp_path / "d", pack_size=16 << 10)
    want = {}

    async def go():
        for i in range(12):
            name, data = archive(i)
            await disk.put_archive(name, one_chunk(data))
            want[name] = data

    asyncio.run(go())
    paths = pack_paths(disk)
    assert len(paths) >= 2
    path = paths[-1] if where == "newest-pack" else paths[0]
    in_pack = sorted((loc[1], n) for n, loc in disk.packs.archives.items()
                     if disk.packs.packs[loc[0]].path == path)
    assert len(in_pack) >= 3
    victim_offset, victim = in_pack[1]  # neither the first nor the last record of the pack
    disk.close()
    with open(path, "r+b") as f:
        f.seek(victim_offset + 30)  # inside the payload length field
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x01]))
    disk = reopen(disk)
    report = disk.packs.report
    assert report.damaged_regions == 1 and report.truncated_bytes == 0
    assert report.damaged_bytes == fmt.RECORD_HEADER_SIZE + len(want[victim])
    del want[victim]
    assert_holds(disk, want)  # the records after the damaged one were found again
    assert asyncio.run(disk.stat(victim)) is None


def test_bytes_that_look_like_records_inside_an_archive_are_never_taken_for_records(tmp_path):
    """An object may contain a pack record (say, a copy of a pack file); the salt rules it out."""
    disk = open_disk(tmp_path / "d")
    name, data = archive(1)
    asyncio.run(disk.put_archive(name, one_chunk(data)))
    salt = disk.packs.head.salt
    fake = fmt.record_header(fmt.DELETE, name, 0, fmt.payload_sum(b""), salt ^ 1)
    assert fmt.parse_record_header(fake, salt) is None
    assert fmt.parse_record_header(fake, salt ^ 1) is not None


def test_corrupt_pack_header_leaves_other_packs_readable(tmp_path):
    disk = open_disk(tmp_path / "d", pack_size=8 << 10)
    want = {}

    async def go():
        for i in range(8):
            name, data = archive(i)
            await disk.put_archive(name, one_chunk(data))
            want[name] = data

    asyncio.run(go())
    first = pack_paths(disk)[0]
    lost = {n for n, loc in disk.packs.archives.items() if disk.packs.packs[loc[0]].path == first}
    disk.close()
    with open(first, "r+b") as f:
        f.seek(10)
        f.write(b"\xff")
    disk = reopen(disk)
    assert disk.packs.report.bad_packs == [first]
    assert_holds(disk, {n: d for n, d in want.items() if n not in lost})
    asyncio.run(put(disk, 50))  # new packs still work


# compaction --------------------------------------------------------------------------------
def test_compaction_keeps_live_archives_and_reclaims_space(tmp_path):
    disk = open_disk(tmp_path / "d", pack_size=32 << 10)
    want = {}

    async def fill():
        for i in range(60):
            name, data = archive(i, size=2000 + 10 * i)
            await disk.put_archive(name, one_chunk(data))
            want[name] = data
        for i in range(0, 60):
            if i % 5:
                await disk.delete_archive(f"{vid(i)}.0")
                del want[f"{vid(i)}.0"]
        await disk.put_record(vid(1000), b"kept record")

    asyncio.run(fill())
    before_paths = pack_paths(disk)
    before_bytes = sum(os.path.getsize(p) for p in before_paths)
    assert len(before_paths) > 4
    report = asyncio.run(disk.compact())
    after_paths = pack_paths(disk)
    after_bytes = sum(os.path.getsize(p) for p in after_paths)
    assert report["packs"] >= len(before_paths) - 2
    assert len(after_paths) < len(before_paths)
    assert after_bytes < before_bytes / 2, (before_bytes, after_bytes)
    assert_holds(disk, want)
    assert dict(disk.list_records()) == {vid(1000): b"kept record"}
    disk = reopen(disk)
    assert_holds(disk, want)
    assert dict(disk.list_records()) == {vid(1000): b"kept record"}


def test_compaction_keeps_a_delete_while_an_older_pack_holds_what_it_deletes(tmp_path):
    """The delete of X lives in a mostly-dead pack, X's old copy in a mostly-live one:
    compacting the first must carry the delete along, or a rescan would resurrect X."""
    disk = open_disk(tmp_path / "d", pack_size=16 << 10)
    seq_of = lambda name: disk.packs.archives[name][0]  # noqa: E731

    async def go():
        x, _ = await put(disk, 1, size=2500)
        keep = dict([await put(disk, i, size=2500) for i in range(2, 6)])     # pack 1: X and 11 kB live
        doomed = [(await put(disk, i, size=2500))[0] for i in range(6, 10)]  # pack 2
        assert {seq_of(n) for n in [x, *keep]} == {1} and {seq_of(n) for n in doomed} == {2}
        for name in [x, *doomed]:
            assert await disk.delete_archive(name)                     # deletes: pack 2 too
        await put(disk, 10, size=14_000)                               # seals pack 2
        assert disk.packs.head.seq == 3
        return x, keep

    x, keep = asyncio.run(go())
    first, second = pack_paths(disk)[:2]
    assert disk.packs.packs[1].live > disk.packs.packs[1].data_bytes / 2  # pack 1 stays
    assert asyncio.run(disk.compact())["packs"] == 1
    assert os.path.exists(first) and not os.path.exists(second)
    assert x in disk.packs.tombs                                       # carried into pack 3
    disk = reopen(disk)
    assert asyncio.run(disk.stat(x)) is None, "compaction resurrected a deleted archive"
    assert_holds(disk, {**keep, archive(10, size=14_000)[0]: archive(10, size=14_000)[1]})

    async def drop_first():  # once X's old copy is compacted away, its delete can go too
        for name in keep:
            await disk.delete_archive(name)
        await disk.compact()
        await put(disk, 11, size=14_000)  # seal pack 3, which now holds the spent deletes
        await disk.compact(min_live=1.01)  # pack 3 is mostly live: force it
    asyncio.run(drop_first())
    assert not os.path.exists(first)
    assert x not in disk.packs.tombs and not disk.packs.shadowed
    disk = reopen(disk)
    assert asyncio.run(disk.stat(x)) is None
    assert x not in disk.packs.tombs


def test_random_operations_match_a_model_across_compactions_and_reopens(tmp_path):
    rng = random.Random(42)
    disk = open_disk(tmp_path / "d", pack_size=24 << 10)
    model: dict[str, bytes] = {}

    async def step(disk):
        ops = []
        for _ in range(rng.randint(1, 12)):
            i = rng.randrange(40)
            name = f"{vid(i)}.0"
            if rng.random() < 0.6:
                _, data = archive(i, size=rng.randint(300, 4000), seed=rng.randrange(1 << 30))
                model[name] = data
                ops.append(disk.put_archive(name, one_chunk(data)))
            else:
                model.pop(name, None)
                ops.append(disk.delete_archive(name, durable=rng.random() < 0.5))
        # ops on one name run in submission order: they queue in that order
        for op in ops:
            await op
        if rng.random() < 0.3:
            await disk.compact(min_live=rng.choice([0.5, 0.9]))

    for round_ in range(30):
        asyncio.run(step(disk))
        assert_holds(disk, model)
        if round_ % 5 == 4:
            disk = reopen(disk)
            assert_holds(disk, model)
    asyncio.run(disk.compact(min_live=1.01))  # every pack but the newest
    disk = reopen(disk)
    assert_holds(disk, model)
    asyncio.run(disk.compact())  # the pack that was newest during the first one, if sealed since
    for pack in disk.packs.packs.values():
        assert pack is disk.packs.head or pack.live >= pack.data_bytes / 2


def test_compaction_runs_alongside_writes(tmp_path):
    disk = open_disk(tmp_path / "d", pack_size=16 << 10)
    want = {}

    async def go():
        for i in range(40):
            name, data = archive(i)
            await disk.put_archive(name, one_chunk(data))
            want[name] = data
        for i in range(0, 40, 2):
            await disk.delete_archive(f"{vid(i)}.0")
            del want[f"{vid(i)}.0"]

        async def writes():
            for i in range(40, 80):
                name, data = archive(i)
                await disk.put_archive(name, one_chunk(data))
                want[name] = data
                if i % 3 == 0:
                    await disk.delete_archive(f"{vid(i - 39)}.0")
                    want.pop(f"{vid(i - 39)}.0", None)
        await asyncio.gather(writes(), disk.compact(), disk.compact())

    asyncio.run(go())
    assert_holds(disk, want)
    assert_holds(reopen(disk), want)


def test_read_only_listing_for_tools(tmp_path):
    disk = open_disk(tmp_path / "d")
    want = dict(archive(i) for i in range(4))

    async def go():
        for n, d in want.items():
            await disk.put_archive(n, one_chunk(d))
        await disk.delete_archive(f"{vid(0)}.0")

    asyncio.run(go())
    listed = fmt.live_archives(disk.packs.folder)
    assert sorted(listed) == sorted(want)[1:]
    for name, (path, offset, length) in listed.items():
        with open(path, "rb") as f:
            f.seek(offset)
            assert f.read(length) == want[name]


def test_pack_format_is_versioned():
    header = fmt.pack_header(7, 1234)
    assert header[:4] == b"PKPK" and struct.unpack_from("<H", header, 4)[0] == fmt.PACK_VERSION
    assert fmt.parse_pack_header(header) == (7, 1234, fmt.PACK_VERSION)
    body = bytearray(header[:-8])
    body[4] = 99
    future = bytes(body) + struct.pack("<Q", fmt.payload_sum(bytes(body)))
    with pytest.raises(fmt.CorruptPack, match="version 99"):
        fmt.parse_pack_header(future)


def test_compactor_runs_every_disk_and_survives_a_failing_one(tmp_path):
    from storage.node.compactor import Compactor

    class Broken:
        async def compact(self, min_live):
            raise OSError("disk on fire")

    disk = open_disk(tmp_path / "d", pack_size=8 << 10)

    async def go():
        for i in range(12):
            await put(disk, i)
        for i in range(12):
            await disk.delete_archive(f"{vid(i)}.0")
        compactor = Compactor({"bad": Broken(), "d1": disk}, interval=3600)
        results = await compactor.run_once()
        assert list(results) == ["d1"] and results["d1"]["packs"] >= 3
        assert compactor.passes == 1 and compactor.reclaimed > 0
        compactor.start()
        await compactor.stop()

    asyncio.run(go())
    assert len(pack_paths(disk)) <= 2


def test_attached_store_reads_packs_and_never_writes_them(tmp_path):
    """A one-shot command beside a running owner: sees packed archives, adds files only,
    leaves the packs (and a torn tail the owner may still be writing) alone."""
    from storage.node.packs import PacksOwnedElsewhere

    async def go():
        owner = open_disk(tmp_path)
        name, data = await put(owner, 1)
        packs_before = {p: open(p, "rb").read() for p in pack_paths(owner)}
        with open(pack_paths(owner)[-1], "ab") as f:  # an append in progress
            f.write(b"\x00partial")
        tool = DiskStore(owner.disk_id, owner.root).attach()
        try:
            assert await read_all(tool, name) == data
            new_name, new_data = archive(2)
            await tool.put_archive(new_name, one_chunk(new_data))
            assert os.path.exists(tool.archive_path(new_name))  # a file, not a pack append
            await tool.put_record(vid(9), b"{}")
            with pytest.raises(PacksOwnedElsewhere):
                await tool.delete_archive(name)
            assert await read_all(tool, name) == data
        finally:
            tool.close()
        for path, raw in packs_before.items():
            assert open(path, "rb").read().startswith(raw)
        assert open(pack_paths(owner)[-1], "rb").read().endswith(b"\x00partial")
        assert await read_all(owner, new_name) == new_data  # the owner reads the tool's file
        owner.close()
    asyncio.run(go())


def test_attached_without_reading_packs_writes_files_and_sees_no_packed_archive(tmp_path):
    """`pocket migrate copy` attaches so (tools/cluster.py): no pack is scanned, so a packed
    archive is not seen at all, and what the tool writes still lands in files the owner reads."""
    async def go():
        owner = open_disk(tmp_path)
        name, data = await put(owner, 3)
        packs_before = {p: open(p, "rb").read() for p in pack_paths(owner)}
        tool = DiskStore(owner.disk_id, owner.root).attach(read_packs=False)
        try:
            assert tool.packs.readonly and tool.packs.report.records == 0 and not tool.packs.packs   # none scanned
            assert await tool.stat(name) is None
            new_name, new_data = archive(4)
            await tool.put_archive(new_name, one_chunk(new_data))
            assert os.path.exists(tool.archive_path(new_name))
        finally:
            tool.close()
        assert {p: open(p, "rb").read() for p in pack_paths(owner)} == packs_before
        assert await read_all(owner, new_name) == new_data and await read_all(owner, name) == data
        owner.close()
    asyncio.run(go())


def test_a_full_disk_refuses_an_append_and_keeps_its_pack(tmp_path, monkeypatch):
    """ENOSPC on the write itself: the waiter gets the error, the pack is as it was and takes
    the next append once there is room (no new empty pack per refused batch)."""
    import errno
    disk = open_disk(tmp_path)
    first, data1 = archive(1)
    asyncio.run(disk.put_archive(first, one_chunk(data1)))
    packs_before = pack_paths(disk)
    real_pwrite = os.pwrite

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "pwrite", full)
    second, data2 = archive(2)
    with pytest.raises(OSError) as e:
        asyncio.run(disk.put_archive(second, one_chunk(data2)))
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert pack_paths(disk) == packs_before and asyncio.run(disk.stat(second)) is None
    asyncio.run(disk.put_archive(second, one_chunk(data2)))
    assert pack_paths(disk) == packs_before
    disk = reopen(disk)
    assert asyncio.run(disk.read(first, 0, 1 << 20)) == data1
    assert asyncio.run(disk.read(second, 0, 1 << 20)) == data2
    disk.close()
