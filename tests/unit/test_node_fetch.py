"""A node's fetch served on its event loop (fetch.serve_cached) answers exactly as the
thread's (fetch.serve) does, and only when it can without waiting for a disk."""
from __future__ import annotations

import asyncio

import pytest

from storage.node import files, fetch
from storage.node.store import INLINE_READ, DiskStore

from .test_node_api import chunked
from .test_store import VID, VID2, make_archive

pytestmark = pytest.mark.skipif(files._NOWAIT is None, reason="this kernel has no RWF_NOWAIT reads")


def stored(tmp_path, archives: dict[str, bytes], pack_threshold: int | None = None) -> DiskStore:
    store = DiskStore("d1", str(tmp_path / "d1"), **({} if pack_threshold is None else
                                                     {"pack_threshold": pack_threshold})).open()

    async def put():
        for name, archive in archives.items():
            assert await store.put_archive(name, chunked(archive)) == len(archive)
    asyncio.run(put())
    return store


def test_packed_cached_archives_are_served_on_the_loop_byte_exact(tmp_path):
    archives = {f"{VID}.{i}": make_archive(VID, i, size=2000 + 3001 * i, seed=70 + i)[0] for i in range(5)}
    store = stored(tmp_path, archives)
    try:
        ops = [(fetch.READ, n, fetch.span(0, fetch.WHOLE)) for n in archives]
        ops += [(fetch.READ, n, fetch.span(13 + i, 500 + 7 * i)) for i, n in enumerate(archives)]
        ops += [(fetch.READ, n, fetch.span(len(a) - 3, 1 << 20)) for n, a in archives.items()]
        ops += [(fetch.STAT, n, b"") for n in archives]
        on_loop = fetch.serve_cached(store, ops)
        assert on_loop is not None and on_loop == fetch.serve(store, ops)
        answers = [bytes(p) for status, p in fetch.outcomes(on_loop, len(ops)) if status == 200]
        want = list(archives.values())
        want += [a[13 + i:513 + 8 * i] for i, a in enumerate(archives.values())]
        want += [a[-3:] for a in archives.values()]
        want += [str(len(a)).encode() for a in archives.values()]
        assert answers == want
    finally:
        store.close()


@pytest.mark.parametrize("odd", ["missing", "bad name", "bad span", "file"])
def test_anything_but_a_cached_packed_archive_goes_to_the_thread(tmp_path, odd):
    """A missing archive or a bad request has an error to report, and an archive file a
    stat or open that could wait for the disk: the whole fetch goes to the thread, whose
    answer is what a caller gets, errors included."""
    archive = make_archive(VID, 0, size=4000, seed=5)[0]
    store = stored(tmp_path, {f"{VID}.0": archive}, pack_threshold=0 if odd == "file" else None)
    try:
        ops = [(fetch.READ, f"{VID}.0", fetch.span(0, fetch.WHOLE))] if odd != "file" else []
        ops.append({"missing": (fetch.STAT, f"{VID2}.1", b""),
                    "bad name": (fetch.READ, "../../etc/passwd", fetch.span(0, 10)),
                    "bad span": (fetch.READ, f"{VID}.0", b"short"),
                    "file": (fetch.READ, f"{VID}.0", fetch.span(0, fetch.WHOLE))}[odd])
        assert fetch.serve_cached(store, ops) is None
        statuses = [s for s, _ in fetch.outcomes(fetch.serve(store, ops), len(ops))]
        assert statuses[-1] == {"missing": 404, "bad name": 400, "bad span": 400, "file": 200}[odd]
    finally:
        store.close()


def test_more_than_a_loop_should_copy_goes_to_the_thread(tmp_path):
    size = 200_000
    count = INLINE_READ // size + 1
    archives = {f"{VID}.{i}": make_archive(VID, i, size=size * 4, segment_size=1 << 20, seed=i)[0]
                for i in range(count)}
    assert all(len(a) < INLINE_READ for a in archives.values())
    store = stored(tmp_path, archives)
    try:
        ops = [(fetch.READ, n, fetch.span(0, fetch.WHOLE)) for n in archives]
        assert fetch.serve_cached(store, ops[:-1]) is not None     # within INLINE_READ in all
        assert sum(len(a) for a in archives.values()) > INLINE_READ
        assert fetch.serve_cached(store, ops) is None
        assert [bytes(p) for _, p in fetch.outcomes(fetch.serve(store, ops), len(ops))] == list(archives.values())
    finally:
        store.close()
