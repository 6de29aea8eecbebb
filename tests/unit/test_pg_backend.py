"""What only the PostgreSQL backend has: several writers at once, a schema, a server that can be away."""
from __future__ import annotations

import socket
import threading

import pytest

from storage.index.backend import IndexUnavailable, MetadataIndexError
from storage.index.index import Index
from storage.index import migrations as M
from storage.index.pg_backend import MIGRATIONS, SCHEMA_VERSION, PgBackend


@pytest.fixture
def pg_index(pg_server):
    index = Index(PgBackend(pg_server.create_database()))
    index.create_bucket("b")
    yield index
    index.close()


def test_racing_conditional_writes_on_two_connections_have_one_winner(pg_index):
    """Two transactions (as two gateways would) both see the key absent, both write it: one is
    re-run, sees the other's row and refuses, as If-None-Match: * must."""
    both_looked = threading.Barrier(2, timeout=30)
    outcomes, runs = [], []

    def create_if_absent(name):
        def fn(ops):
            runs.append(name)
            seen = ops.get_object("b", "k")
            if len(runs) <= 2:
                both_looked.wait()          # the first run of each: both have looked before either writes
            if seen is not None:
                return f"{name}: refused"
            ops.put_object("b", "k", {"by": name})
            return f"{name}: created"
        outcomes.append(pg_index.write(fn))

    threads = [threading.Thread(target=create_if_absent, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(o.split(": ")[1] for o in outcomes) == ["created", "refused"]
    winner = next(o.split(": ")[0] for o in outcomes if o.endswith("created"))
    assert pg_index.get_object("b", "k") == {"by": winner}
    assert len(runs) == 3 and pg_index.backend.restarts == 1


def test_schema_is_created_by_migrate_only_and_checked_on_open(pg_server):
    dsn = pg_server.create_database(template="template1")
    with pytest.raises(MetadataIndexError, match="pocket index migrate-schema"):
        PgBackend(dsn)
    backend = PgBackend(dsn, check_schema=False)
    try:
        assert backend.migrate() == (0, SCHEMA_VERSION)
        assert backend.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
    finally:
        backend.close()
    Index(PgBackend(dsn)).close()


def test_a_version_1_schema_is_refused_until_migrated_and_keeps_its_rows(pg_server):
    """Version 2 added the migrate table: a database left at version 1 (as the first release
    made it) is refused on open, and migrate-schema adds the table without touching the rest."""
    import psycopg
    dsn = pg_server.create_database(template="template1")
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TABLE pocket_schema (version int PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO pocket_schema (version) VALUES (1)")
        assert conn.execute("SELECT to_regclass('pocket_migrate')").fetchone()[0] is None
        conn.execute("INSERT INTO pocket_buckets (k, v) VALUES (%s, %s)", (b"old", b"row"))
    with pytest.raises(MetadataIndexError, match=f"schema version 1, this Pocket needs {SCHEMA_VERSION}"):
        PgBackend(dsn)
    backend = PgBackend(dsn, check_schema=False)
    try:
        assert backend.migrate() == (1, SCHEMA_VERSION)
    finally:
        backend.close()
    index = Index(PgBackend(dsn))
    try:
        with index.backend.read() as txn:
            assert txn.get("buckets", b"old") == b"row"
        seq = index.write(lambda ops: M.mark_dirty(ops, "b", "k"))
        with index.read() as ops:
            assert M.dirty(ops, "b") == [("k", seq)]
    finally:
        index.close()


def test_a_version_2_database_with_objects_gets_its_volume_index_filled(pg_server):
    """Version 3 added the volume index: upgrading a database that already holds objects
    (made by the release before) creates the table and fills it from every record."""
    import psycopg
    from storage.index import keys as K
    from storage.index import volume_index
    from storage.index.index import upgrade
    from storage.index.ops import _pack
    dsn = pg_server.create_database(template="template1")
    records = [{"bucket": "b", "key": f"k{i}", "version_id": f"{i:032x}", "volume": f"vol-{i % 3}", "size": 1}
               for i in range(30)]
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TABLE pocket_schema (version int PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
        for version in (0, 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO pocket_schema (version) VALUES (%s)", (version + 1,))
        conn.execute("INSERT INTO pocket_buckets (k, v) VALUES (%s, %s)", (b"b", _pack({"rec": {"name": "b"}})))
        for r in records:
            conn.execute("INSERT INTO pocket_objects (k, v) VALUES (%s, %s)",
                         (K.object_index_key("b", r["key"]), _pack({"key": r["key"], "rec": r})))
    assert upgrade(dsn) == (2, SCHEMA_VERSION, 30)
    index = Index(PgBackend(dsn))
    try:
        assert volume_index.is_filled(index)
        assert {s["version_id"] for s in volume_index.volume_sets(index, "vol-1")} == \
            {r["version_id"] for r in records if r["volume"] == "vol-1"}
    finally:
        index.close()
    assert upgrade(dsn) == (SCHEMA_VERSION, SCHEMA_VERSION, 0)


def test_an_unreachable_server_is_index_unavailable_with_the_password_hidden():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # nothing listens there once closed
    with pytest.raises(IndexUnavailable) as e:
        PgBackend(f"postgresql://pocket:s3cret@127.0.0.1:{port}/nowhere")
    assert "s3cret" not in str(e.value) and "unavailable" in str(e.value)


def test_a_read_on_the_event_loop_is_caught_and_one_through_call_is_not(pg_index, caplog):
    """The check the off-loop cluster test relies on (POCKET_INDEX_LOOP_CHECK=1)."""
    import asyncio
    pg_index.backend.loop_check = True

    async def requests():
        assert await pg_index.call(pg_index.get_bucket, "b") is not None   # off the loop: fine
        assert pg_index.backend.loop_reads == 0
        pg_index.get_bucket("b")                                             # on the loop: caught
    asyncio.run(requests())
    pg_index.get_bucket("b")                                                 # no loop in this thread: fine
    assert pg_index.backend.loop_reads == 1
    assert "on the event loop's thread" in caplog.text and "test_pg_backend.py" in caplog.text
