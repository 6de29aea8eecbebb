"""Fixtures shared by unit and cluster tests: the index on each of its backends."""
from __future__ import annotations

import pytest

from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.index.pg_backend import PgBackend

from .pg_server import PgServer


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the whole session, started and stopped by the tests."""
    server = PgServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["lmdb", "postgres"])
def index_backend(request):
    return request.param


@pytest.fixture
def make_index(index_backend, request, tmp_path):
    """`make_index(name)`: the index `name` of this test on the backend under test.

    The same name gives the same index again (after a close, as a restart would); LMDB
    options (map_size...) apply to LMDB only."""
    opened: list[Index] = []
    databases: dict[str, str] = {}

    def make(name: str = "idx", **lmdb_options) -> Index:
        if index_backend == "lmdb":
            index = Index(LmdbBackend(str(tmp_path / name), **lmdb_options))
        else:
            server = request.getfixturevalue("pg_server")
            if name not in databases:
                databases[name] = server.create_database()
            index = Index(PgBackend(databases[name]))
        opened.append(index)
        return index

    yield make
    for index in opened:
        try:
            index.close()
        except Exception:
            pass   # closed by the test already
