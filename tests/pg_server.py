"""A throwaway PostgreSQL server for the tests of the index's PostgreSQL backend.

Debian's server binaries (scripts/install-test-tools installs them) run `initdb` into
a fresh temp folder and `pg_ctl` on a free port of 127.0.0.1. PostgreSQL refuses to run
as root, and tests and CI do run as root, so then the server runs as `nobody` and owns
its folder. Each test gets a database of its own, cloned from a template that already
has Pocket's schema (`migrate-schema` once per session, not once per test).
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid

import psycopg

from storage.index.pg_backend import PgBackend

TEMPLATE = "pocket_template"


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL's server binaries are missing: run scripts/install-test-tools "
                           "(apt-get install postgresql)")
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.root = tempfile.mkdtemp(prefix="pocket-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self._as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run(self._as_user + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> "PgServer":
        if self._as_user:
            os.chown(self.root, 65534, 65534)
        self._run(f"{self.bindir}/initdb", "-D", self.data, "-U", "pocket", "--auth=trust", "-E", "UTF8",
                  "--no-instructions")
        self.resume()
        self.create_database(TEMPLATE, template="template1")
        backend = PgBackend(self.dsn(TEMPLATE), check_schema=False)
        backend.migrate()
        backend.close()
        return self

    def resume(self) -> None:
        """Start the server (again, after halt(): same data, same port)."""
        self._run(f"{self.bindir}/pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-w", "-t", "120",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=300", "start")

    def halt(self) -> None:
        """Stop the server as a crash would (immediate: no checkpoint), keeping its data."""
        self._run(f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def dsn(self, database: str) -> str:
        return f"postgresql://pocket@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str = "", template: str = TEMPLATE) -> str:
        """A new database (with Pocket's schema when cloned from the template); its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.dsn(name)

    def stop(self) -> None:
        try:
            self.halt()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
