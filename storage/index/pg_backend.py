"""PostgreSQL backend of the index: with its connection pool (pg_pool.py), the only
module in Pocket that imports psycopg.

Several gateways share one namespace by sharing one database. Each index table is a
PostgreSQL table `pocket_<name> (k bytea PRIMARY KEY, v bytea)`: bytea compares as
unsigned bytes, so a range over the primary key's btree is the same UTF-8 byte order
LMDB gives, and ListObjects with prefix, delimiter and continuation stays one range
scan. Keys are the same encoded keys as in LMDB (keys.py: long S3 keys are a 400-byte
prefix plus a hash, the full key in the value), so the S3 layer above is one code.

Write transactions run SERIALIZABLE: a conditional write (`If-None-Match: *`,
`If-Match`, a lifecycle delete of one version) is a read and a write in one function,
and when two gateways race, PostgreSQL aborts one with a serialization failure; the
transaction is then run again from the start (the function is pure, see backend.py)
and sees the winner's row. Reads are REPEATABLE READ snapshots. Commits are durable
(synchronous_commit as the server has it, on by default) and batched by the writer.

A lost connection or a server that is down raises IndexUnavailable (503 SlowDown to
clients); the pool opens fresh connections by itself once the server is back (pg_pool.py).

Every call waits on the network, so asyncio code must make it off the event loop
(`Index.call`, the IndexWriter). With POCKET_INDEX_LOOP_CHECK=1 in the environment (the
tests set it) a transaction begun on a thread that runs an event loop is logged as an
error with the caller's stack and counted in `loop_reads`, so a blocking read that
slipped in fails the tests instead of stalling every request behind one query.

The schema is versioned (`pocket_schema`) and created or upgraded only by
`pocket index migrate-schema` (`migrate()` here); opening an index whose schema is
missing or older than this code says so instead of guessing.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import psycopg
import psycopg.errors

from .backend import TABLES, Backend, Conflicted, IndexUnavailable, MetadataIndexError, RestartTxn, Txn
from .pg_pool import Pool
from .pg_schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger("pocket.index.pg")

T = TypeVar("T")

MAX_RESTARTS = 12          # runs of one transaction before it is Conflicted (the writer then splits its batch)
BACKOFF = (0.001, 0.1)     # first and largest ceiling of the jittered wait between runs, seconds


def _table(name: str) -> str:
    if name not in TABLES:
        raise MetadataIndexError(f"no index table {name!r}")
    return f"pocket_{name}"


def migrate_schema(dsn: str) -> tuple[int, int]:
    """Create or upgrade the schema of the database at `dsn` (`pocket index migrate-schema`,
    `pocket up --postgres`); returns (version before, after)."""
    backend = PgBackend(dsn, check_schema=False)
    try:
        return backend.migrate()
    finally:
        backend.close()


def redact(dsn: str) -> str:
    """The DSN without its password, for logs and errors."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", re.sub(r"password=\S+", "password=***", dsn))


@contextmanager
def _errors(what: str, dsn: str):
    """Driver errors as the index's own: conflicts restart the txn, lost servers are 503s."""
    try:
        yield
    except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as e:
        raise RestartTxn(str(e)) from e
    except psycopg.OperationalError as e:
        raise IndexUnavailable(f"PostgreSQL index at {redact(dsn)} is unavailable during {what} ({e}); "
                               "check that the server is up and reachable; Pocket reconnects by itself") from e


class _Txn(Txn):
    """One transaction on one pooled connection (autocommit off by explicit BEGIN)."""

    def __init__(self, backend: "PgBackend", conn: psycopg.Connection, writable: bool):
        self._b = backend
        self._conn = conn
        self._savepoints = 0
        self.writable = writable
        # The first error the server reported in this write. It aborts the whole pipeline,
        # so it is the transaction's fate even when one fn of a batch caught it as its own,
        # and every later statement only says "pipeline aborted": write() raises this one.
        self.failed: BaseException | None = None

    def _exec(self, sql: str, params: tuple = ()) -> None:
        """A statement whose result is not needed: in a write it is only queued (pipeline mode)."""
        try:
            with _errors("a query", self._b.dsn):
                self._conn.execute(sql, params)
        except (psycopg.Error, RestartTxn, IndexUnavailable) as e:
            self.failed = self.failed or e
            raise

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """A statement's rows: waits for everything queued before it too."""
        try:
            with _errors("a query", self._b.dsn):
                return self._conn.execute(sql, params).fetchall()
        except (psycopg.Error, RestartTxn, IndexUnavailable) as e:
            self.failed = self.failed or e
            raise

    def get(self, table: str, key: bytes) -> bytes | None:
        rows = self._rows(f"SELECT v FROM {_table(table)} WHERE k = %s", (key,))
        return bytes(rows[0][0]) if rows else None

    def get_many(self, table: str, keys: list[bytes]) -> list[bytes | None]:
        rows = self._rows(f"SELECT k, v FROM {_table(table)} WHERE k = ANY(%s)", (list(keys),))
        found = {bytes(k): v for k, v in rows}
        return [None if (v := found.get(k)) is None else bytes(v) for k in keys]

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._exec(f"INSERT INTO {_table(table)} (k, v) VALUES (%s, %s) "
                   "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", (key, value))

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        return bool(self._rows(f"INSERT INTO {_table(table)} (k, v) VALUES (%s, %s) ON CONFLICT (k) DO NOTHING "
                               "RETURNING 1", (key, value)))

    def remove(self, table: str, key: bytes) -> bool:
        return bool(self._rows(f"DELETE FROM {_table(table)} WHERE k = %s RETURNING 1", (key,)))

    def _pages(self, table: str, start: bytes, end: bytes | None, descending: bool):
        """Rows a page at a time, the pages growing: a listing that stops early reads little."""
        t, limit = _table(table), 32
        low, high, first = start, end, True
        while True:
            if descending:
                bound = "k >= %s" + ("" if high is None else " AND k < %s")
            else:
                bound = ("k >= %s" if first else "k > %s") + ("" if high is None else " AND k < %s")
            params = (low,) if high is None else (low, high)
            order = "DESC" if descending else "ASC"
            sql = f"SELECT k, v FROM {t} WHERE {bound} ORDER BY k {order} LIMIT {limit}"
            rows = self._rows(sql, params)
            yield from ((bytes(k), bytes(v)) for k, v in rows)
            if len(rows) < limit:
                return
            if descending:
                high = bytes(rows[-1][0])
            else:
                low = bytes(rows[-1][0])
            first, limit = False, min(limit * 4, 2048)

    def range(self, table: str, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self._pages(table, start, end, False)

    def range_rev(self, table: str, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self._pages(table, start, end, True)

    def clear(self, table: str) -> None:
        self._exec(f"DELETE FROM {_table(table)}")

    def count(self, table: str) -> int:
        return self._rows(f"SELECT count(*) FROM {_table(table)}")[0][0]

    @contextmanager
    def savepoint(self):
        self._savepoints += 1
        name = f"s{self._savepoints}"
        self._exec(f"SAVEPOINT {name}")
        try:
            yield self
        except RestartTxn:
            raise   # the whole transaction is lost: the backend rolls it back and runs it again
        except BaseException:
            self._exec(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        self._exec(f"RELEASE SAVEPOINT {name}")


class PgBackend(Backend):
    """Tables in one PostgreSQL database, through a pool of connections. Thread-safe."""

    local = False

    def __init__(self, dsn: str, pool_size: int = 16, *, check_schema: bool = True):
        self.dsn = dsn
        self.commits = 0
        self.restarts = 0   # transactions run again after a serialization failure
        self._count_lock = threading.Lock()
        self.loop_check = os.environ.get("POCKET_INDEX_LOOP_CHECK") == "1"
        self.loop_reads = 0   # transactions begun on an event loop's thread (counted with loop_check)
        self._pool = Pool(dsn, pool_size)
        if check_schema:
            try:
                found = self.schema_version()
            except BaseException:
                self._pool.close()
                raise
            if found != SCHEMA_VERSION:
                self._pool.close()
                raise MetadataIndexError(
                    f"the PostgreSQL index at {redact(dsn)} has schema version {found}, this Pocket needs "
                    f"{SCHEMA_VERSION}: run `pocket index migrate-schema` (with the same config) first")

    def describe(self) -> str:
        return redact(self.dsn)

    @contextmanager
    def _connection(self, what: str):
        with _errors(what, self.dsn), self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _begun(self, what: str, begin: str):
        """A pooled connection with a transaction begun on it.

        After a server restart or failover the pool still holds connections to the old
        server; each fails at its BEGIN (nothing sent yet, so nothing to undo) and is
        dropped for a fresh one, so clients see 503s only while the server is away."""
        if self.loop_check:
            self._check_off_loop(what)
        for _ in range(self._pool.size + 1):
            with self._connection(what) as conn:
                try:
                    conn.execute(begin)
                except psycopg.OperationalError as e:
                    log.warning("PostgreSQL index at %s: a pooled connection is gone (%s); reconnecting",
                                redact(self.dsn), str(e).strip())
                    continue   # closed now: the pool discards it
                yield conn
                return
        raise IndexUnavailable(f"PostgreSQL index at {redact(self.dsn)}: no working connection during {what}; "
                               "check that the server is up and reachable; Pocket reconnects by itself")

    def _check_off_loop(self, what: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return   # no event loop in this thread: a worker thread or a command-line tool
        with self._count_lock:
            self.loop_reads += 1
        frames = [f for f in traceback.extract_stack(limit=40)[:-2]
                  if not f.filename.endswith(("contextlib.py", os.path.join("index", "pg_backend.py"),
                                              os.path.join("index", "index.py")))]
        stack = "".join(traceback.format_list(frames[-6:]))
        log.error("index %s on the event loop's thread: it blocks every request while it waits on "
                  "PostgreSQL; make it through Index.call or the IndexWriter. Called from:\n%s", what, stack)

    @contextmanager
    def read(self) -> Iterator[_Txn]:
        with self._begun("a read", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as conn:
            try:
                yield _Txn(self, conn, False)
            finally:
                self._rollback(conn)

    def write(self, fn: Callable[[_Txn], T]) -> T:
        """Run fn in one SERIALIZABLE transaction, again from the start after a serialization
        failure or deadlock (40001, 40P01: the server asks for exactly that), after a jittered
        wait that doubles each time so two gateways that collided do not collide again."""
        for attempt in range(MAX_RESTARTS):
            with self._begun("a write", "BEGIN ISOLATION LEVEL SERIALIZABLE") as conn:
                try:
                    # Pipelined: writes and savepoints are queued, not waited for, so a
                    # PUT's commit costs two round trips in a batch, not five; the
                    # COMMIT's outcome (a serialization failure too) arrives at the sync.
                    txn = _Txn(self, conn, True)
                    with _errors("a commit", self.dsn), conn.pipeline():
                        result = fn(txn)
                        if txn.failed is not None:
                            raise txn.failed   # a conflict re-runs the batch; anything else fails all of it
                        conn.execute("COMMIT")
                except RestartTxn:
                    self._rollback(conn)
                    with self._count_lock:
                        self.restarts += 1
                    time.sleep(random.uniform(0, min(BACKOFF[0] * 2 ** attempt, BACKOFF[1])))
                    continue
                except BaseException:
                    self._rollback(conn)
                    raise
            with self._count_lock:
                self.commits += 1
            return result
        raise Conflicted(f"a write to {redact(self.dsn)} conflicted with other writers {MAX_RESTARTS} times "
                         "in a row and was not committed; clients retry it (503 SlowDown)")

    @staticmethod
    def _rollback(conn: psycopg.Connection) -> None:
        if not conn.closed:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass   # the pool discards a connection in a bad state

    # ---- schema ----------------------------------------------------------
    def schema_version(self) -> int:
        """The schema version in the database (0: none yet)."""
        with self._connection("a schema check") as conn, _errors("a schema check", self.dsn):
            exists = conn.execute("SELECT to_regclass('pocket_schema') IS NOT NULL").fetchone()[0]
            if not exists:
                return 0
            row = conn.execute("SELECT max(version) FROM pocket_schema").fetchone()
            return row[0] or 0

    def migrate(self) -> tuple[int, int]:
        """Create or upgrade the schema to SCHEMA_VERSION; returns (version before, after).

        One transaction under an advisory lock, so two `migrate-schema` at once are safe."""
        with self._connection("migrate-schema") as conn, _errors("migrate-schema", self.dsn):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7700501)")
                conn.execute("CREATE TABLE IF NOT EXISTS pocket_schema "
                             "(version int PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
                before = conn.execute("SELECT coalesce(max(version), 0) FROM pocket_schema").fetchone()[0]
                if before > SCHEMA_VERSION:
                    raise MetadataIndexError(f"the database's index schema is version {before}, newer than this "
                                             f"Pocket's {SCHEMA_VERSION}: upgrade Pocket, not the schema")
                for version in range(before, SCHEMA_VERSION):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                    conn.execute("INSERT INTO pocket_schema (version) VALUES (%s)", (version + 1,))
        return before, SCHEMA_VERSION

    # ---- lifecycle -------------------------------------------------------
    def stats(self) -> dict:
        with self._connection("stats") as conn, _errors("stats", self.dsn):
            entries, sizes = {}, {}
            for t in TABLES:
                entries[t] = conn.execute(f"SELECT count(*) FROM {_table(t)}").fetchone()[0]
                sizes[t] = conn.execute("SELECT pg_total_relation_size(%s)", (_table(t),)).fetchone()[0]
        return {"backend": "postgres", "dsn": redact(self.dsn), "entries": entries, "bytes": sizes,
                "used_bytes": sum(sizes.values()), "commits": self.commits, "restarts": self.restarts}

    def backup(self, dest: str) -> None:
        raise MetadataIndexError("the index is in PostgreSQL: back it up with PostgreSQL's own tools "
                                 "(pg_dump, or base backups and WAL archiving), or `pocket index copy` "
                                 "it to an LMDB folder")

    def close(self) -> None:
        self._pool.close()
