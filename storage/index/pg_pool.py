"""The PostgreSQL index's connections (pg_backend.py runs the transactions on them)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import psycopg

CONNECT_TIMEOUT = 5.0


class Pool:
    """Up to `size` connections, opened when needed and kept while they work.

    Not psycopg_pool: its background reconnection backs off exponentially (a gateway
    took 60 s to serve again after a one-minute outage, measured) and callers wait a
    whole pool timeout while the server is away. Here a caller that needs a connection
    opens it itself: refused at once while the server is down (a 503 right away), and
    the first request after it is back reconnects."""

    def __init__(self, dsn: str, size: int):
        self.dsn, self.size = dsn, size
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if not self._slots.acquire(timeout=30):
            raise psycopg.OperationalError(f"all {self.size} index connections stayed busy for 30 s "
                                           "(raise index.pool_size, or look for slow queries)")
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                # prepare_threshold=None: no server-side prepared statements. psycopg prepares a
                # query on its 5th run by queueing a Parse in the pipeline; when a serialization
                # failure aborts that pipeline the Parse is skipped but psycopg still believes the
                # statement prepared, and every later use on the connection failed with
                # "prepared statement _pg3_N does not exist" (500s and 503s under load, issue 11).
                conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT),
                                       prepare_threshold=None)
            yield conn
        finally:
            if conn is not None:
                if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.close()   # broken, or left inside a transaction: never reuse
                else:
                    with self._lock:
                        self._idle.append(conn)
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
