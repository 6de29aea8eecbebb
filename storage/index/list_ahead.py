"""The next page of a listing, read while the client is still reading this one.

Walking a large bucket is a chain of requests, each waiting for the one before: the
client parses a page (~11 ms for 1,000 keys with ElementTree) while the gateway's loop
idles, then the gateway reads the next page (~6 ms of the ~8 it spends per page) while
the client waits. With a second core the two can overlap, so once a truncated page is
answered the gateway reads the one after it on its idle loop, and the request for that
page takes it instead of reading the index again.

A page kept ahead is handed out only while the index is at the very snapshot it was read
from (LMDB's id of the last committed write, whoever wrote it: another gateway worker
too), so it is exactly what reading it again would give; after any commit it is thrown
away and the page read afresh. A backend without such an id (PostgreSQL) never keeps a
page. The cost is the read of a page nobody asks for, when a client stops early or a
write lands in between; an index that committed between the page and the read ahead is
busy with writes, and is not read ahead at all.

Several gateway workers share the S3 port, and a client that spreads its requests over
pooled connections (aiohttp takes the oldest idle one) sends consecutive pages to any of
them: a worker that read only the next page held it for a request that went elsewhere.
So each reads `depth` pages ahead (the number of workers), skipping those it holds at
the current snapshot: whichever worker the next request reaches has its page ready.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from .backend import MetadataIndexError

if TYPE_CHECKING:
    import asyncio

    from .index import Index
    from .ops import ListPage

KEEP = 8          # pages kept ahead at once: walks in progress (each holds ~1,000 decoded records)
FRESH_S = 10.0    # a page not asked for within this long is dropped (its walk was left)
SETTLE_S = 0.001  # after the request's task ended, before reading ahead


class ListAhead:
    """Pages read ahead, by (bucket, prefix, delimiter, start_after, max_keys). Used on one event loop."""

    def __init__(self, index: Index, depth: int = 1):
        self.index, self.depth = index, depth
        self._pages: OrderedDict[tuple, tuple[int, float, ListPage]] = OrderedDict()
        self._due: dict[tuple, asyncio.TimerHandle] = {}   # reads ahead not started yet

    def take(self, query: tuple, snapshot: int | None) -> ListPage | None:
        """The page read ahead for `query`, if the index is still at the snapshot it was read from."""
        due = self._due.pop(query, None)
        if due is not None:   # asked for sooner than it was read (a busy box): read only once
            due.cancel()
        kept = self._pages.pop(query, None)
        if kept is None or snapshot is None or kept[0] != snapshot:
            return None
        return kept[2]

    def after(self, query: tuple, page: ListPage, snapshot: int | None) -> None:
        """`page` (answering `query` at `snapshot`) was truncated: read the next one when the loop is idle."""
        if snapshot is None or not page.is_truncated:
            return
        import asyncio   # here: commands that read the index without a loop (migrate verify --quick) run without it
        try:
            loop, task = asyncio.get_running_loop(), asyncio.current_task()
        except RuntimeError:   # a thread or a command without a loop: nothing to overlap with
            return
        if task is None:
            return
        bucket, prefix, delimiter, _, max_keys = query
        following = (bucket, prefix, delimiter, page.next_marker, max_keys)
        # Not before this request's task has written its answer: a large page leaves the
        # task waiting on the socket (a drain), and reading meanwhile held back its end.
        # Even then uvloop may keep its last few KiB buffered until the next poll, so a
        # moment more.
        task.add_done_callback(lambda _: self._plan(loop, following, snapshot))

    def _plan(self, loop: asyncio.AbstractEventLoop, query: tuple, snapshot: int) -> None:
        self._due[query] = loop.call_later(SETTLE_S, self._read, loop, query, snapshot, self.depth)

    def _read(self, loop: asyncio.AbstractEventLoop, query: tuple, snapshot: int, depth: int) -> None:
        """Read `query`'s page, then (one loop turn later, so requests interleave) the
        `depth - 1` after it; a page already held at this snapshot is not read again."""
        self._due.pop(query, None)
        held = self._pages.get(query)
        if held is not None and held[0] == snapshot:
            page = held[2]
        else:
            page = self._fetch(query, snapshot)
        if page is not None and page.is_truncated and depth > 1:
            bucket, prefix, delimiter, _, max_keys = query
            loop.call_soon(self._read, loop, (bucket, prefix, delimiter, page.next_marker, max_keys), snapshot,
                           depth - 1)

    def _fetch(self, query: tuple, snapshot: int) -> ListPage | None:
        try:
            with self.index.read() as t:
                now = t.snapshot()
                if now != snapshot:
                    return None
                page = t.list_objects(*query)
        except MetadataIndexError:   # the bucket went meanwhile: its request reads and says so
            return None
        clock = time.monotonic()
        self._pages[query] = (now, clock, page)
        self._pages.move_to_end(query)
        while len(self._pages) > KEEP or clock - next(iter(self._pages.values()))[1] > FRESH_S:
            self._pages.popitem(last=False)
        return page
