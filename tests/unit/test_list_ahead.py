"""A listing page read ahead (index/list_ahead.py) is handed out only while the index is
unchanged: the next request of a walk gets exactly what reading the index would give."""
from __future__ import annotations

import asyncio
import time

from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend

B = "walked"
KEYS = [f"k/{i:03d}" for i in range(10)]


def _index(tmp_path) -> Index:
    ix = Index(LmdbBackend(str(tmp_path / "ix")))
    ix.create_bucket(B)
    for k in KEYS:
        ix.put_object(B, k, {"size": 1, "etag": k, "created": 1.0})
    return ix


async def _page(ix: Index, start: str, max_keys: int = 3):
    """One page as the S3 handler asks for it: in a task of its own, like a request."""
    return await asyncio.create_task(_ask(ix, start, max_keys))


async def _ask(ix: Index, start: str, max_keys: int):
    return ix.list_objects(B, prefix="k/", start_after=start, max_keys=max_keys, ahead=True)


async def _kept(ix: Index, start: str, max_keys: int = 3) -> None:
    """Until the page after `start` has been read ahead (it is, a moment after its request)."""
    deadline = time.monotonic() + 10
    while (B, "k/", "", start, max_keys) not in ix.ahead._pages:
        assert time.monotonic() < deadline, "the next page was never read ahead"
        await asyncio.sleep(0.001)


def test_an_unchanged_index_hands_out_the_page_read_ahead(tmp_path):
    ix = _index(tmp_path)

    async def walk():
        first = await _page(ix, "")
        await _kept(ix, first.next_marker)
        kept = ix.ahead._pages[(B, "k/", "", first.next_marker, 3)][2]
        second = await _page(ix, first.next_marker)
        assert second is kept
        return first, second

    first, second = asyncio.run(walk())
    assert [k for k, _ in first.contents] == KEYS[:3] and [k for k, _ in second.contents] == KEYS[3:6]


def test_a_write_after_the_read_ahead_is_listed(tmp_path):
    ix = _index(tmp_path)

    async def walk():
        first = await _page(ix, "")
        await _kept(ix, first.next_marker)
        ix.put_object(B, "k/002.5", {"size": 2, "etag": "new", "created": 2.0})   # lands in the next page
        ix.delete_object(B, "k/004")
        second = await _page(ix, first.next_marker)
        await _kept(ix, second.next_marker)
        ix.put_object(B, "k/007", {"size": 3, "etag": "changed", "created": 3.0})  # a record, not a key, changes
        third = await _page(ix, second.next_marker)
        return second, third

    second, third = asyncio.run(walk())
    assert [k for k, _ in second.contents] == ["k/002.5", "k/003", "k/005"]
    assert [(k, r["etag"]) for k, r in third.contents] == [("k/006", "k/006"), ("k/007", "changed"), ("k/008", "k/008")]


def test_no_read_ahead_without_a_loop_or_past_the_last_page(tmp_path):
    ix = _index(tmp_path)
    ix.list_objects(B, prefix="k/", max_keys=3, ahead=True)      # a thread or command: no loop to read on
    assert not ix.ahead._pages

    async def last():
        page = await _page(ix, "k/006", max_keys=5)
        for _ in range(3):       # the request task's done callbacks, where a read ahead is planned
            await asyncio.sleep(0)
        return page, dict(ix.ahead._due)

    page, due = asyncio.run(last())
    assert not page.is_truncated and not due and not ix.ahead._pages


def test_with_two_workers_each_reads_two_pages_ahead(tmp_path):
    """A client's next page may reach either worker: each holds the next two, read once."""
    ix = _index(tmp_path)
    ix.ahead.depth = 2

    async def walk():
        first = await _page(ix, "")
        await _kept(ix, "k/005")                       # the page after the next one
        second, third = ix.ahead._pages[(B, "k/", "", "k/002", 3)][2], ix.ahead._pages[(B, "k/", "", "k/005", 3)][2]
        assert await _page(ix, "k/002") is second      # read once: the page after it is not read again
        await _kept(ix, "k/008")
        assert ix.ahead._pages[(B, "k/", "", "k/005", 3)][2] is third
        return first, second, third

    first, second, third = asyncio.run(walk())
    assert [k for p in (first, second, third) for k, _ in p.contents] == KEYS[:9]
