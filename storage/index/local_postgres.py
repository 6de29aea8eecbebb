"""A PostgreSQL server of Pocket's own on this machine, for `pocket up --postgres` and the tests.

Debian's server binaries (package `postgresql`) run `initdb` into a folder and `pg_ctl`
on a port of 127.0.0.1 with no Unix socket, so the folder's path may be any length and
no system folder is needed. PostgreSQL refuses to run as root, so under root the server
runs as the `postgres` system user (or `nobody` without it), which then owns the folder
and must be able to reach it. `pg_ctl` starts the server in a session of its own: Ctrl-C
in a terminal reaches the gateways, and whoever started the server stops it after them.
"""
from __future__ import annotations

import glob
import os
import pwd
import subprocess

import psycopg


class LocalPostgresError(Exception):
    """The server could not be set up or started; the message says why and what to do."""


def bindir() -> str:
    """The newest installed PostgreSQL's server binaries."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise LocalPostgresError("PostgreSQL's server binaries are missing (/usr/lib/postgresql/*/bin): install "
                                 "them with `apt-get install postgresql` (scripts/install-test-tools does)")
    return os.path.dirname(found[-1])


def _server_user() -> str | None:
    """Who runs the server: this user, or under root a system user (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise LocalPostgresError("running as root, and neither a `postgres` nor a `nobody` user exists to run "
                             "PostgreSQL as (it refuses root): run pocket as an ordinary user")


class LocalPostgres:
    """The server whose files are all in `folder` (data/, postgres.log), on 127.0.0.1:`port`.

    `password` empty: anyone on this machine may connect (tests); otherwise connections
    need it (scram-sha-256), as the role `pocket`."""

    def __init__(self, folder: str, port: int, password: str = "") -> None:
        self.bindir = bindir()
        self.folder = os.path.abspath(folder)
        self.data = os.path.join(self.folder, "data")
        self.log = os.path.join(self.folder, "postgres.log")
        self.port, self.password = port, password
        self.user = _server_user()
        self._as_user = ["runuser", "-u", self.user, "--"] if self.user else []

    def dsn(self, database: str) -> str:
        secret = f":{self.password}" if self.password else ""
        return f"postgresql://pocket{secret}@127.0.0.1:{self.port}/{database}"

    def _run(self, what: str, *args: str, check: bool = True) -> int:
        done = subprocess.run(self._as_user + list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if check and done.returncode != 0:
            raise LocalPostgresError(f"{what} failed ({' '.join(args[:1])} exited {done.returncode}): "
                                     f"{done.stderr.strip() or 'no message'}; its log is {self.log}")
        return done.returncode

    def initialised(self) -> bool:
        return os.path.exists(os.path.join(self.data, "PG_VERSION"))

    def init(self) -> None:
        """Create the server's files (once: a second call on the same folder does nothing)."""
        if self.initialised():
            return
        os.makedirs(self.folder, exist_ok=True)
        os.chmod(self.folder, 0o700)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            if subprocess.run(self._as_user + ["test", "-w", self.folder]).returncode != 0:
                raise LocalPostgresError(
                    f"PostgreSQL runs as the user {self.user} (it refuses root), and {self.user} cannot reach "
                    f"{self.folder}: let it search every folder above (chmod o+x), choose a data folder it can "
                    "reach, or run pocket as an ordinary user")
        args = ["-D", self.data, "-U", "pocket", "-E", "UTF8", "--no-instructions"]
        pwfile = os.path.join(self.folder, "initdb.pw")
        if self.password:
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.password + "\n")
            if self.user:
                os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, -1)
            args += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args.append("--auth=trust")
        try:
            self._run("initdb", f"{self.bindir}/initdb", *args)
        finally:
            if os.path.exists(pwfile):
                os.unlink(pwfile)

    def running(self) -> bool:
        """Whether the server of this folder runs (left over by a killed `pocket up`, say)."""
        return self.initialised() and self._run("pg_ctl status", f"{self.bindir}/pg_ctl", "-D", self.data,
                                                "status", check=False) == 0

    def start(self) -> None:
        """Start the server (again, after stop(): same data, same port); waits until it accepts."""
        if self.running():
            return
        self._run("starting PostgreSQL", f"{self.bindir}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "120",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=300", "start")

    def stop(self, immediate: bool = False) -> None:
        """Stop the server, keeping its data: fast (clean, a checkpoint) or immediate (as a crash)."""
        if self.running():
            self._run("stopping PostgreSQL", f"{self.bindir}/pg_ctl", "-D", self.data, "-m",
                      "immediate" if immediate else "fast", "-w", "-t", "120", "stop")

    def create_database(self, name: str, template: str = "template1") -> str:
        """The database `name`, created from `template` unless it exists; its DSN."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.dsn(name)
