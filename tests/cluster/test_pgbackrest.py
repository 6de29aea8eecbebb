"""pgBackRest keeps a PostgreSQL server's backups and WAL archive in a Pocket bucket.

The tool an ops team moving off S3 points at its backup bucket, with an S3 client of its
own (written in C, not an AWS SDK) that insists on TLS with a verified certificate. A
real PostgreSQL server (Debian's, as tests/pg_server.py runs it) archives its WAL
through `archive-push`; a full and an incremental backup go to the bucket, `verify`
reads the repository back, and a restore into an empty folder starts a server holding
exactly the rows written before the second backup. pgBackRest comes from Debian
(scripts/install-test-tools).
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from storage.index.local_postgres import _server_user, bindir

from .certs import TestCA
from .harness import ACCESS_KEY, SECRET_KEY, ProcCluster, free_ports


@pytest.fixture(autouse=True)
def _tools():
    assert shutil.which("pgbackrest"), "pgbackrest not installed: run scripts/install-test-tools (make test does)"


@pytest.fixture
def home():
    """A folder PostgreSQL's user can reach (pytest's own are private to this one): the
    server's files, pgBackRest's and the CA it checks the gateway's certificate with."""
    folder = tempfile.mkdtemp(prefix="pocket-pgbackrest-")
    os.chmod(folder, 0o755)
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def tls_cluster(tmp_path, home):
    ca = TestCA(str(home))
    cert, key = str(tmp_path / "gateway.crt"), str(tmp_path / "gateway.key")
    ca.issue(cert, key)
    os.chmod(ca.pem, 0o644)
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6, embedded=True, gateway={"tls_cert": cert, "tls_key": key},
                    ca=ca.pem).start()
    yield c
    c.close()


def test_pgbackrest_backs_up_and_restores_a_postgres_server(tls_cluster, home):
    c = tls_cluster
    c.client().create_bucket(Bucket="pg-backups")
    user = _server_user()                     # PostgreSQL refuses root: under root it runs as `postgres`
    as_user = ["runuser", "-u", user, "--"] if user else []
    port = free_ports(1)[0]
    conf = home / "pgbackrest.conf"
    conf.write_text(f"""[global]
repo1-type=s3
repo1-s3-endpoint=localhost
repo1-storage-port={c.port}
repo1-storage-ca-file={c.ca}
repo1-s3-bucket=pg-backups
repo1-s3-region=us-east-1
repo1-s3-key={ACCESS_KEY}
repo1-s3-key-secret={SECRET_KEY}
repo1-s3-uri-style=path
repo1-path=/main
repo1-bundle=y
repo1-retention-full=2
process-max=4
start-fast=y
log-level-console=warn
log-path={home}/log
lock-path={home}/lock
spool-path={home}/spool

[main]
pg1-path={home}/data
pg1-port={port}
pg1-socket-path={home}
""")
    if user:
        shutil.chown(home, user)
        shutil.chown(conf, user)

    def run(*args: str) -> str:
        done = subprocess.run(as_user + list(args), capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def backrest(*args: str) -> str:
        return run("pgbackrest", f"--config={conf}", "--stanza=main", *args)

    def psql(sql: str) -> str:
        return run(f"{bindir()}/psql", "-h", str(home), "-p", str(port), "-U", "postgres", "-At", "-c", sql).strip()

    def pg_ctl(data, *args: str) -> str:
        return run(f"{bindir()}/pg_ctl", "-D", str(data), "-l", str(home / "postgres.log"), "-w", *args)

    run(f"{bindir()}/initdb", "-D", str(home / "data"), "-A", "trust", "-U", "postgres")
    with open(home / "data" / "postgresql.conf", "a") as f:
        f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{home}'\n"
                f"wal_level = replica\narchive_mode = on\n"
                f"archive_command = 'pgbackrest --config={conf} --stanza=main archive-push %p'\n")
    pg_ctl(home / "data", "start")
    try:
        psql("create table t (i int, s text); insert into t select g, md5(g::text) from generate_series(1, 20000) g")
        backrest("stanza-create")
        backrest("check")                        # WAL archiving through Pocket works
        backrest("--type=full", "backup")
        psql("insert into t select g, 'second' from generate_series(20001, 30000) g")
        backrest("--type=incr", "backup")
        info = backrest("info")
        assert "full backup" in info and "incr backup" in info, info
        backrest("verify")                       # every file of the repository read back and checked
        expected = psql("select count(*), sum(i), md5(string_agg(s, ',' order by i)) from t")
    finally:
        pg_ctl(home / "data", "stop")
    restored = home / "restored"
    restored.mkdir(mode=0o700)
    if user:
        shutil.chown(restored, user)
    backrest(f"--pg1-path={restored}", "--type=immediate", "--target-action=promote", "restore")
    pg_ctl(restored, "start")
    try:
        assert psql("select count(*), sum(i), md5(string_agg(s, ',' order by i)) from t") == expected
        assert expected.startswith("30000|450015000|")
    finally:
        pg_ctl(restored, "stop")
