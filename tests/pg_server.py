"""A throwaway PostgreSQL server for the tests of the index's PostgreSQL backend.

The same server `pocket up --postgres` runs (storage/index/local_postgres.py), in a
fresh temp folder on a free port of 127.0.0.1. Each test gets a database of its own,
cloned from a template that already has Pocket's schema (`migrate-schema` once per
session, not once per test).
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid

from storage.index.local_postgres import LocalPostgres
from storage.index.pg_backend import migrate_schema

TEMPLATE = "pocket_template"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer(LocalPostgres):
    def __init__(self) -> None:
        super().__init__(tempfile.mkdtemp(prefix="pocket-pg-"), _free_port())

    def start(self) -> "PgServer":
        self.init()
        # No fsync: a throwaway server whose machine never crashes under it. A commit is still
        # written to the kernel before it returns, so a server killed (halt) loses nothing
        # committed, which is all the tests do to it. The tests' commits waited on fsyncs
        # of a disk the other test workers (and builds) write to.
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write("fsync = off\n")
        super().start()
        migrate_schema(super().create_database(TEMPLATE))
        return self

    def resume(self) -> None:
        """Start the server again after halt(): same data, same port."""
        super().start()

    def halt(self) -> None:
        """Stop the server as a crash would (immediate: no checkpoint), keeping its data."""
        super().stop(immediate=True)

    def create_database(self, name: str = "", template: str = TEMPLATE) -> str:
        """A new database (with Pocket's schema when cloned from the template); its DSN."""
        return super().create_database(name or f"t_{uuid.uuid4().hex[:16]}", template)

    def stop(self) -> None:
        try:
            self.halt()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
