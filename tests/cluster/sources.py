"""Real S3 servers on 127.0.0.1 for the migration tests to move buckets out of.

Each source has its own starter function returning a `Source` (endpoint, keys, a
boto3 client, close()). Tests start and stop them; nothing outside the test's folder is used.
`SourceLink` stands between Pocket and a source so a test can make the source
unreachable (connections refused) and bring it back without losing its contents.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config as BotoConfig

from .harness import free_ports, wait_http


@dataclass
class Source:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    proc: subprocess.Popen | None = None
    log_path: str = ""

    def client(self, endpoint: str | None = None, **kw):
        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"},
                                              s3={"addressing_style": "path"}, **kw))

    def credentials_env(self) -> dict:
        """What a `pocket migrate` process (or a gateway) needs in its environment to reach this source."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_moto(root: str) -> S3Source:
    """moto's S3 server (PyPI `moto[server]`): in memory, any keys accepted, versioning and tags supported."""
    os.makedirs(root, exist_ok=True)
    port = free_ports(1)[0]
    log_path = os.path.join(root, "moto.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=log, cwd=root)
    source = Source("moto", f"http://127.0.0.1:{port}", "testing", "testing", proc, log_path)
    try:
        wait_http(source.endpoint + "/", timeout=60)
    except BaseException:
        source.close()
        raise
    return source


class SourceLink:
    """A TCP relay to a source that a test can cut (new connections refused, open ones
    closed) and restore: the source "unreachable" while its contents stay."""

    def __init__(self, target_port: int):
        self.target_port = target_port
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

        async def pipe(src, dst):
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
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


@pytest.fixture
def moto_source(tmp_path):
    source = start_moto(str(tmp_path / "moto"))
    yield source
    source.close()
