"""The disk scrubber (storage/node/disk_scrub.py) on real disk folders: what it finds,
what it remembers across a restart, and that a pass resumes instead of starting over."""
from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from storage.node.disk_scrub import STATE_FILE, DiskScrubber
from storage.node.packformat import RECORD_HEADER_SIZE
from storage.node.store import DiskStore

from .test_store import chunked, flip, make_archive, stored_at

VIDS = [f"{i:032x}" for i in range(1, 13)]


async def fill(store: DiskStore, count: int = 12, size: int = 40_000) -> dict[str, bytes]:
    archives = {}
    for i, vid in enumerate(VIDS[:count]):
        name = f"{vid}.{i % 6}"
        archives[name] = make_archive(vid, i % 6, size=size, seed=i)[0]
        await store.put_archive(name, chunked(archives[name], 8192))
    return archives


def open_disk(tmp_path, threshold: int) -> DiskStore:
    return DiskStore("d1", str(tmp_path / "d1"), pack_threshold=threshold).open()


def run(fn):
    return asyncio.run(fn())


async def until(what: str, check, timeout: float = 10.0) -> None:
    """Poll `check()` on the loop until true: wait for a scrubber's progress, not a fixed time."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_pass_finds_rot_in_files_packs_and_records_and_remembers_it(tmp_path):
    async def go():
        files = open_disk(tmp_path / "f", 0)
        packed = open_disk(tmp_path / "p", 256 << 10)
        for store in (files, packed):
            archives = await fill(store)
            await store.put_record(VIDS[0], b'{"tombstone": true}')
            await store.put_record(VIDS[1], b'{"bucket": "b"}')
            bad = sorted(archives)[3]
            path, offset, length = stored_at(store, bad)
            flip(path, offset + length // 2, b"\xff\x00\xff")
            scrubber = DiskScrubber(store, rate=0, schedule=False)
            assert await scrubber.run_pass()
            report = scrubber.report()
            assert [row["archive"] for row in report["corrupt"]] == [bad]
            last = report["last_full_pass"]
            assert last["archives_checked"] == 12
            assert last["bytes_checked"] == sum(len(a) for a in archives.values())
            if store is packed:
                loc = store.packs.records[VIDS[1]]
                pack_path = store.packs.packs[loc[0]].path
                flip(pack_path, loc[1] + RECORD_HEADER_SIZE + 2, b"X")
                assert await scrubber.run_pass()
                assert [row["record"] for row in scrubber.report()["corrupt_records"]] == [VIDS[1]]
            # a restarted process (a new scrubber over the same folder) still knows
            again = DiskScrubber(store, rate=0, schedule=False).report()
            assert [row["archive"] for row in again["corrupt"]] == [bad]
            assert again["totals"] == scrubber.state["totals"]
            assert again["totals"]["corrupt_found"] == (2 if store is packed else 1)
            # the archive is rewritten (repaired): the finding is stale and no longer reported
            await store.put_archive(bad, chunked(archives[bad]))
            assert again["corrupt"] and DiskScrubber(store, rate=0, schedule=False).report()["corrupt"] == []
            store.close()
    run(go)


def test_a_pass_interrupted_by_a_restart_resumes_where_it_stopped(tmp_path):
    async def go():
        store = open_disk(tmp_path, 0)
        archives = await fill(store, 12, 100_000)
        total = sum(len(a) for a in archives.values())
        first = DiskScrubber(store, rate=total / 1.5, schedule=False)
        first.request()
        first.start()
        await until("the paced pass to check an archive",
                    lambda: (first.state["pass"] or {}).get("archives_checked", 0) >= 2)
        await first.stop()                          # the node goes down mid-pass
        with open(os.path.join(store.root, STATE_FILE)) as f:
            saved = json.load(f)
        assert saved["pass"] is not None and saved["last_full_pass"] is None
        cursor = saved["pass"]["cursor"]
        assert sorted(archives)[0] <= cursor < sorted(archives)[-1]

        second = DiskScrubber(store, rate=0, schedule=True, start_delay=3600)
        second.start()                              # resumes at once, schedule or not
        deadline = time.monotonic() + 10
        while second.state["last_full_pass"] is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await second.stop()
        last = second.state["last_full_pass"]
        assert last["number"] == saved["pass"]["number"] and last["archives_checked"] == 12
        # nothing was read twice: the lifetime counter equals one pass over the disk
        assert second.state["totals"]["bytes_checked"] == last["bytes_checked"] == total
        store.close()
    run(go)


def test_a_request_starts_a_new_pass_from_the_first_archive(tmp_path):
    async def go():
        store = open_disk(tmp_path, 0)
        archives = await fill(store, 6, 50_000)
        total = sum(len(a) for a in archives.values())
        scrubber = DiskScrubber(store, rate=total, schedule=False)
        scrubber.start()
        first = scrubber.request()
        await until("the requested pass to check an archive",
                    lambda: (scrubber.state["pass"] or {}).get("archives_checked", 0) >= 1)
        assert scrubber.state["pass"]["number"] == first and scrubber.state["pass"]["archives_checked"] < 6
        second = scrubber.request()                 # asked again mid-pass: a new pass, from the start
        assert second == first + 1
        assert scrubber.request(rate=0) == second   # asked twice before it starts: one pass, the last rate
        deadline = time.monotonic() + 10
        while (scrubber.state["last_full_pass"] or {}).get("number") != second and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await scrubber.stop()
        last = scrubber.state["last_full_pass"]
        assert last["number"] == second and last["bytes_checked"] == total and last["rate"] == 0
        store.close()
    run(go)


def test_rate_is_honoured(tmp_path):
    async def go():
        store = open_disk(tmp_path, 0)
        archives = await fill(store, 6, 100_000)
        total = sum(len(a) for a in archives.values())
        scrubber = DiskScrubber(store, rate=total / 1.0, schedule=False)
        started = time.monotonic()
        await scrubber.run_pass()
        store.close()
        return time.monotonic() - started
    assert run(go) >= 0.95


def test_an_unreadable_archive_is_a_finding_not_a_stuck_pass(tmp_path):
    """Reads that fail (EIO from a bad sector; here a directory where the file was, which
    fails reads with EISDIR) make that archive a finding, and the pass goes on."""
    async def go():
        store = open_disk(tmp_path, 0)
        archives = await fill(store, 4)
        victim = sorted(archives)[1]
        path, _, _ = stored_at(store, victim)
        os.unlink(path)
        os.mkdir(path)
        scrubber = DiskScrubber(store, rate=0, schedule=False)
        assert await scrubber.run_pass()
        report = scrubber.report()
        assert report["last_full_pass"]["archives_checked"] == 4
        assert [(r["archive"], r["problem"].startswith("unreadable")) for r in report["corrupt"]] == [(victim, True)]
        store.close()
    run(go)


def test_a_one_shot_repair_of_a_corrupt_packed_copy_settles_its_finding_before_the_next_pass(tmp_path):
    """A one-shot `pocket repair` beside the owner writes the rebuilt archive as a file;
    the packed copy is still there (only the owner may drop it). The finding about that
    packed copy must not be reported again once the file is whole: the gateway would
    queue the just-repaired object again, and the queue would not drain without a second,
    needless repair (the flake of test_pocket_up's one-shot repair test)."""
    async def go():
        store = open_disk(tmp_path, 256 << 10)
        archives = await fill(store, 4)
        bad = sorted(archives)[1]
        path, offset, length = stored_at(store, bad)
        flip(path, offset + length // 2, b"\xff\x00\xff")
        scrubber = DiskScrubber(store, rate=0, schedule=False)
        assert await scrubber.run_pass()
        assert [row["archive"] for row in (await store.scrub_state())["corrupt"]] == [bad]
        one_shot = DiskStore("d1", store.root).attach()
        await one_shot.put_archive(bad, chunked(archives[bad]))
        assert (await store.scrub_state())["corrupt"] == []        # no pass in between
        assert await store.read(bad, 0, len(archives[bad])) == archives[bad]   # the file, not the rot
        assert await scrubber.run_pass() and scrubber.report()["corrupt"] == []
        # a file copy that is itself bad settles nothing: the finding stays
        other = sorted(archives)[2]
        path, offset, length = stored_at(store, other)
        flip(path, offset + length // 2, b"\xff\x00\xff")
        assert await scrubber.run_pass()
        await one_shot.put_archive(other, chunked(archives[other]))
        flip(store.archive_path(other), len(archives[other]) // 2, b"\xff\x00\xff")   # rotten in turn
        assert [row["archive"] for row in (await store.scrub_state())["corrupt"]] == [other]
        store.close()
    run(go)


def test_a_pass_removes_temp_files_a_killed_writer_left_and_keeps_live_ones(tmp_path):
    """Gateway workers and one-shot repairs write archives beside the owner (temp file,
    then rename); one killed mid-write leaves its temp file. The owner's scrub pass removes
    those untouched for an hour and leaves one being written."""
    async def go():
        store = open_disk(tmp_path, 0)
        await fill(store, count=2)
        stale, live = os.path.join(store.tmp_folder, f"{VIDS[5]}.1.dead"), os.path.join(store.tmp_folder, f"{VIDS[6]}.2.live")
        for path in (stale, live):
            with open(path, "wb") as f:
                f.write(b"x" * 5000)
        two_hours_ago = time.time() - 7200
        os.utime(stale, (two_hours_ago, two_hours_ago))
        assert await DiskScrubber(store, rate=0, schedule=False).run_pass()
        assert sorted(os.listdir(store.tmp_folder)) == [os.path.basename(live)]
        assert len(list(store.list_archives())) == 2
        store.close()
    run(go)


@pytest.mark.parametrize("packed_as", ["escaped", "utf-8"])
def test_a_corrupt_packed_copy_gives_way_to_a_repaired_file_of_another_length(tmp_path, packed_as):
    """A repaired copy holds the same segments and manifest as the archive it replaces but
    not always the same bytes: a repair writes today's format and spells the trailer's
    JSON as today's serializer does (UTF-8 where an earlier release \\u-escaped a non-ASCII
    key). Whichever copy is the longer, the scrub pass takes the whole, good file for the
    corrupt packed copy."""
    from storage import layout

    async def go():
        store = open_disk(tmp_path, 64 << 10)
        name = f"{VIDS[0]}.1"
        archive, manifest = make_archive(VIDS[0], 1, size=30_000, seed=7)
        trailer_at = len(archive) - len(layout.pack_trailer(manifest))
        manifest["key"] = "caf\u00e9/\u65e5\u672c"
        body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        escaped = archive[:trailer_at] + body + layout._FOOTER.pack(len(body), layout.checksum(body),
                                                                    layout.FOOTER_MAGIC)
        utf8 = archive[:trailer_at] + layout.pack_trailer(manifest)
        assert len(escaped) > len(utf8)
        packed, repaired = (escaped, utf8) if packed_as == "escaped" else (utf8, escaped)
        await store.put_archive(name, chunked(packed, 8192))
        path, offset, _ = stored_at(store, name)
        flip(path, offset + layout.HEADER_SIZE + 100, b"\xff\x00")    # the packed copy rots
        folder = os.path.join(store.root, "archives", name[30:32])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:             # what a one-shot repair leaves
            f.write(repaired)
        scrubber = DiskScrubber(store, rate=0, schedule=False)
        assert await scrubber.run_pass()
        assert scrubber.report()["corrupt"] == []
        assert store.packs.archive_size(name) is None
        assert await store.read(name, 0, 1 << 30) == repaired
        store.close()
    run(go)
