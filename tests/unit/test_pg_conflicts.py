"""Batches of the index writer that PostgreSQL aborts with a real serialization failure.

A second connection (another gateway, as far as the server can tell) commits a write
that forms a read/write cycle with the batch: T1 reads x and writes y, T2 reads y and
writes x and commits first, so the server must abort T1 (SQLSTATE 40001). The batch is
run again and commits; a write that conflicts on every run fails alone, its batch split
around it.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
import time

import psycopg
import pytest

from storage.index import pg_backend
from storage.index.backend import Conflicted
from storage.index.batcher import IndexWriter
from storage.index.index import Index
from storage.index.pg_backend import PgBackend
from storage.objects.commits import put_if_newer


@pytest.fixture
def pg(pg_server):
    dsn = pg_server.create_database()
    index = Index(PgBackend(dsn))
    index.create_bucket("b")
    other = Index(PgBackend(dsn))   # its own pool: a second gateway, as far as the server can tell
    yield index, other
    other.close()
    index.close()


def _cross(other: Index, read: str, write: str) -> None:
    """On the other index: read the object `read`, create the object `write`, commit."""
    def fn(ops):
        assert ops.get_object("b", read) is None
        ops.put_object("b", write, {"by": "other"})
    other.write(fn)


def test_a_batch_aborted_by_a_serialization_failure_is_run_again_and_commits(pg):
    index, other = pg
    runs = []

    def skewed(ops):
        runs.append(1)
        seen = ops.get_object("b", "x")              # T1 reads x ...
        if len(runs) == 1:
            _cross(other, read="y", write="x")       # ... T2 reads y, writes x, commits ...
        ops.put_object("b", "y", {"by": "batch", "saw_x": seen is not None})   # ... T1 writes y
        return "y written"

    async def scenario():
        writer = IndexWriter(index)
        try:
            results = await asyncio.gather(writer.put_object("b", "a", {"n": 1}), writer.submit(skewed),
                                           writer.put_object("b", "c", {"n": 3}))
            return results, writer.commits
        finally:
            await writer.aclose()

    results, commits = asyncio.run(scenario())
    assert results == [None, "y written", None]
    assert commits == 1 and index.backend.restarts >= 1 and len(runs) >= 2
    assert index.get_object("b", "y") == {"by": "batch", "saw_x": True}   # the re-run saw T2's commit
    assert index.get_object("b", "x") == {"by": "other"}
    assert index.get_object("b", "a") == {"n": 1} and index.get_object("b", "c") == {"n": 3}


def test_a_write_that_always_conflicts_fails_alone_and_its_batch_commits(pg, monkeypatch):
    monkeypatch.setattr(pg_backend, "MAX_RESTARTS", 3)
    monkeypatch.setattr(pg_backend, "BACKOFF", (0.0, 0.0))
    index, other = pg
    attempt = itertools.count()

    def hopeless(ops):
        n = next(attempt)
        ops.get_object("b", f"x{n}")
        _cross(other, read=f"y{n}", write=f"x{n}")   # another writer wins every time
        ops.put_object("b", f"y{n}", {"by": "hopeless"})

    async def scenario():
        writer = IndexWriter(index)
        try:
            outcomes = await asyncio.gather(*[writer.put_object("b", f"k{i}", {"n": i}) for i in range(3)],
                                            writer.submit(hopeless),
                                            *[writer.put_object("b", f"k{i}", {"n": i}) for i in range(3, 6)],
                                            return_exceptions=True)
            return outcomes, writer.splits
        finally:
            await writer.aclose()

    outcomes, splits = asyncio.run(scenario())
    assert [o for o in outcomes if o is not None and not isinstance(o, Conflicted)] == []
    assert isinstance(outcomes[3], Conflicted) and "503 SlowDown" in str(outcomes[3])
    assert splits >= 2
    for i in range(6):
        assert index.get_object("b", f"k{i}") == {"n": i}
    assert not any(index.get_object("b", f"y{n}") for n in range(next(attempt)))   # nothing of it committed


def test_two_gateways_creating_neighbouring_keys_do_not_conflict(pg):
    """Both transactions are open at once, each creating a new key on the same btree page.
    Reading a key's absence first (as PUT did) made PostgreSQL abort one of them; a PUT of
    a new key now only inserts, so neither is run again."""
    index, other = pg
    both_wrote = threading.Barrier(2, timeout=30)

    def create(ix, key):
        def fn(ops):
            assert put_if_newer(ops, "b", key, {"version_id": f"v-{key}"}) is None
            both_wrote.wait()       # neither commits before both have written
        ix.write(fn)

    threads = [threading.Thread(target=create, args=(ix, key)) for ix, key in ((index, "n/001"), (other, "n/002"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert index.backend.restarts == 0 and other.backend.restarts == 0
    assert index.get_object("b", "n/001") == {"version_id": "v-n/001"}
    assert index.get_object("b", "n/002") == {"version_id": "v-n/002"}


def _wait_for_a_blocked_insert(dsn: str) -> None:
    """Until another session waits on a row lock (the second insert of one key)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as watch:
        while not watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND datname = current_database()").fetchone()[0]:
            assert time.monotonic() < deadline, "the second insert never waited on the first"
            time.sleep(0.01)


def test_racing_if_none_match_creates_of_one_key_have_one_winner(pg):
    """Two gateways create one key under If-None-Match: * at once: the second insert waits
    on the first, fails to serialize when it commits, and its re-run sees the winner's
    record and refuses."""
    index, other = pg
    outcomes, first_in = [], threading.Event()

    def absent(current):
        if current is not None:
            raise FileExistsError("412")

    def create(ix, name, lead):
        runs = []

        def fn(ops):
            runs.append(1)
            if not lead and len(runs) == 1:
                assert first_in.wait(30)
            put_if_newer(ops, "b", "once", {"version_id": name}, absent)
            if lead and len(runs) == 1:
                first_in.set()
                _wait_for_a_blocked_insert(ix.backend.dsn)   # the other's insert waits on this one
        try:
            ix.write(fn)
            outcomes.append((name, "created"))
        except FileExistsError:
            outcomes.append((name, "refused"))

    threads = [threading.Thread(target=create, args=(index, "v1", True)),
               threading.Thread(target=create, args=(other, "v2", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == [("v1", "created"), ("v2", "refused")]
    assert index.get_object("b", "once") == {"version_id": "v1"}
    assert other.backend.restarts == 1
