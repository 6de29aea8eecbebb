"""A disk on another node, reached over the internal HTTP API.

`RemoteDisk` has the same methods as `DiskStore`, so the object layer neither knows nor
cares whether a fragment goes to a local folder or across the network.
"""
from __future__ import annotations

import json
from typing import AsyncIterable, AsyncIterator

import aiohttp

from .. import layout
from . import auth, batch, fetch
from .archive_tag import signed_archive
from .archives import head_of
from .store import ArchiveMissing
from .tls import client_ssl


def node_session() -> aiohttp.ClientSession:
    """The session a process's RemoteDisks share. Without the cookie jar (nodes set no
    cookies) and the headers aiohttp adds by default (User-Agent, Accept,
    Accept-Encoding, Content-Type: the node parses and ignores them), a node spent
    ~10-15 us (~5 %) less CPU per small request (bench/node_link, 2,000 fetches; the
    gateway's side did not move). Nothing a node sends is compressed."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar(),
                                 skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                                 auto_decompress=False)


class DiskUnavailable(ConnectionError):
    """The node did not answer, answered with an error, or the disk is not there."""


class RemoteDisk:
    def __init__(self, disk_id: str, node_url: str, secret: str, session: aiohttp.ClientSession,
                 timeout: float = 10.0, *, node_id: str, ssl=True, batch_bytes: int = batch.BATCH_BYTES):
        self.disk_id = disk_id
        self.node_url = node_url.rstrip("/")
        self.node_id = node_id     # requests are signed for this node only (auth.py)
        self._secret = secret
        self._session = session
        self._ssl = ssl            # tls.client_ssl(): the pinned certificate of an https node
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._small = batch.Coalescer(self._batch, max_bytes=batch_bytes)   # small archives, records, deletes (batch.py)
        self._reads = batch.Coalescer(self._fetch, fetch.MAX_OPS, fetch.MAX_BYTES)   # small reads, stats (fetch.py)

    @classmethod
    def for_node(cls, node, disk_id: str, secret: str, session: aiohttp.ClientSession,
                 timeout: float = 10.0, **kw) -> "RemoteDisk":
        """A disk of a config [[nodes]] entry, reached the way the entry says (tls.py)."""
        return cls(disk_id, node.url, secret, session, timeout, node_id=node.id, ssl=client_ssl(node), **kw)

    def _request(self, method: str, path: str, **kw):
        path = f"/v1/{self.disk_id}{path}" if not path.startswith("/v1/") else path
        qs = kw.pop("params", None)
        if qs:
            path += "?" + "&".join(f"{k}={v}" for k, v in qs.items())
        headers = auth.sign(self._secret, method, path, self.node_id)
        if "data" in kw:      # a record as bytes, or an archive as it streams (archive_tag.py)
            data = kw.pop("data")
            kw["data"] = auth.tag(self._secret, headers, data) if isinstance(data, bytes) \
                else signed_archive(self._secret, headers, data)
        return self._session.request(method, self.node_url + path, headers=headers, ssl=self._ssl,
                                     timeout=kw.pop("timeout", self._timeout), **kw)

    async def _call(self, method: str, path: str, ok=(200,), **kw) -> tuple[int, bytes]:
        try:
            async with self._request(method, path, **kw) as resp:
                body = await resp.read()
                self._check(resp, body, method, path, ok)
                return resp.status, body
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._unreachable(e) from e

    def _check(self, resp: aiohttp.ClientResponse, body: bytes, method: str, path: str, ok) -> None:
        if resp.status == 404 and 404 not in ok:
            raise ArchiveMissing(f"{self.disk_id}:{path}")
        if resp.status == 422:
            raise layout.CorruptFragment(body.decode(errors="replace"))
        if resp.status == 403 and resp.headers.get(auth.LINK_HEADER) != auth.LINK_VERSION:
            raise DiskUnavailable(
                f"disk {self.disk_id} at {self.node_url} refused {method} {path} and does not speak "
                f"node link {auth.LINK_VERSION} (another Pocket release?): {body[:200]!r}")
        if resp.status not in ok:
            raise DiskUnavailable(
                f"disk {self.disk_id} at {self.node_url}: {method} {path} -> {resp.status} {body[:200]!r}")

    def _unreachable(self, e: BaseException) -> DiskUnavailable:
        return DiskUnavailable(f"disk {self.disk_id} at {self.node_url} unreachable: {e!r}")

    async def put_archive(self, name: str, chunks: AsyncIterable[bytes]) -> int:
        """A small archive (the whole of it arrives within SMALL_ARCHIVE bytes) goes with
        the disk's other small writes (batch.py); a larger one streams in as it is encoded."""
        stream = aiter(chunks)
        head, _size, whole = await head_of(stream, batch.SMALL_ARCHIVE)
        if whole:
            return await self._small.submit(batch.ARCHIVE, name, b"".join(head))
        _, raw = await self._call("PUT", f"/archives/{name}", ok=(201,), data=_chain(head, stream))
        return json.loads(raw)["size"]

    async def read(self, name: str, offset: int, length: int) -> bytes:
        """A read up to fetch.PIECE bytes, or of a small archive whole (length >= fetch.WHOLE),
        goes with the disk's other small reads (fetch.py); a longer one on its own."""
        if fetch.PIECE < length < fetch.WHOLE:
            _, raw = await self._call("GET", f"/archives/{name}", params={"offset": offset, "length": length})
            return raw
        return await self._reads.submit(fetch.READ, name, fetch.span(offset, length), fetch.weight(length))

    async def stream_range(self, name: str, offset: int, length: int) -> "RangeStream":
        """Bytes offset..offset+length of an archive (clamped to its end) as one response,
        taken in parts (`RangeStream.take`): one request for a fragment's share of a whole
        GET instead of one per window, each costing ~0.3 ms of CPU on either side."""
        path = f"/archives/{name}"
        try:
            resp = await self._request("GET", path, params={"offset": offset, "length": length})
            if resp.status != 200:
                try:
                    self._check(resp, await resp.read(), "GET", path, (200,))
                finally:
                    resp.release()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._unreachable(e) from e
        return RangeStream(self, resp, offset)

    async def stat(self, name: str) -> int | None:
        return await self._reads.submit(fetch.STAT, name, b"")

    async def delete_archive(self, name: str, durable: bool = True) -> bool:
        return await self._small.submit(batch.DELETE if durable else batch.FORGET, name, b"")

    async def read_manifest(self, name: str) -> dict:
        _, raw = await self._call("GET", f"/archives/{name}/manifest")
        return json.loads(raw)

    async def put_record(self, rec_id: str, data: bytes) -> None:
        await self._small.submit(batch.RECORD, rec_id, data)

    async def _batch(self, ops: list) -> list:
        """Outcomes of several operations sent together: a value, or the exception the
        operation's own request would have raised."""
        _, raw = await self._call("PUT", "/batch", data=batch.pack(ops))
        outcomes = json.loads(raw)
        if len(outcomes) != len(ops):
            raise DiskUnavailable(f"disk {self.disk_id} at {self.node_url}: {len(outcomes)} outcomes "
                                  f"for a batch of {len(ops)}")
        out = []
        for (kind, name, _data), done in zip(ops, outcomes):
            if "error" not in done:
                out.append(done["value"])
            elif done["status"] == 422:
                out.append(layout.CorruptFragment(done["error"]))
            else:
                out.append(DiskUnavailable(f"disk {self.disk_id} at {self.node_url}: {kind.decode()} {name} -> "
                                           f"{done['status']} {done['error']}"))
        return out

    async def _fetch(self, ops: list) -> list:
        """Outcomes of several reads and stats sent together (fetch.py): bytes, a size or
        None (a stat of no archive), or the exception the operation's own request raised."""
        _, raw = await self._call("PUT", "/fetch", data=batch.pack(ops))
        try:
            answers = fetch.outcomes(raw, len(ops))
        except fetch.BadAnswer as e:
            raise DiskUnavailable(f"disk {self.disk_id} at {self.node_url}: {e}") from None
        out: list = []
        for (kind, name, _data), (status, payload) in zip(ops, answers):
            if status == 200:
                out.append(int(payload) if kind == fetch.STAT else bytes(payload))
            elif status == 404:
                out.append(None if kind == fetch.STAT else ArchiveMissing(f"{self.disk_id}:/archives/{name}"))
            elif status == 422:
                out.append(layout.CorruptFragment(bytes(payload).decode(errors="replace")))
            else:
                out.append(DiskUnavailable(f"disk {self.disk_id} at {self.node_url}: {kind.decode()} {name} -> "
                                           f"{status} {bytes(payload[:200])!r}"))
        return out

    async def iter_archives(self) -> AsyncIterator[tuple[str, int]]:
        async for row in self._ndjson("/archives"):
            yield row["name"], row["size"]

    async def iter_records(self) -> AsyncIterator[tuple[str, bytes]]:
        async for row in self._ndjson("/records"):
            yield row["id"], row["data"].encode()

    async def scrub_state(self) -> dict:
        _, raw = await self._call("GET", "/scrub")
        return json.loads(raw)

    async def scrub_request(self, rate: int | None = None) -> int:
        _, raw = await self._call("POST", "/scrub", ok=(202,), params={"rate": rate} if rate is not None else None)
        return json.loads(raw)["pass"]

    async def health(self) -> dict:
        _, raw = await self._call("GET", "/v1/health")   # the node timeout, as for every call (cluster.py)
        for disk in json.loads(raw)["disks"]:
            if disk["disk"] == self.disk_id:
                return disk
        raise DiskUnavailable(f"node {self.node_url} does not serve disk {self.disk_id}")

    async def _ndjson(self, path: str):
        try:
            async with self._request("GET", path, timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as resp:
                if resp.status != 200:
                    raise DiskUnavailable(f"disk {self.disk_id}: listing {path} -> {resp.status}")
                async for line in resp.content:
                    if line.strip():
                        yield json.loads(line)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise DiskUnavailable(f"disk {self.disk_id} at {self.node_url} unreachable: {e!r}") from e


async def _chain(head: list, rest: AsyncIterable):
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


class RangeStream:
    """An archive range arriving over one response, taken in consecutive parts. TCP's flow
    control bounds what waits: the node reads on only as the gateway takes. Close it
    when done with it, whole or not (a partly read one closes its connection)."""

    def __init__(self, disk: RemoteDisk, resp: aiohttp.ClientResponse, offset: int):
        self.position = offset          # archive offset of the next byte `take` returns
        self._disk, self._resp = disk, resp
        self._left = resp.content_length if resp.content_length is not None else 1 << 62
        self._rest = memoryview(b"")    # what the last chunk held past the last part

    @property
    def done(self) -> bool:
        return self._left == 0

    async def take(self, n: int) -> bytes:
        """The next `n` bytes, fewer at the archive's end (as `RemoteDisk.read` gives).
        Joined once from views of the chunks as they came: the stream reader's
        `readexactly` copies twice, and filling a zeroed bytearray was 2.6 % of a GET's
        gateway samples (py-spy) for the zeroing alone."""
        n = min(n, self._left)
        pieces = []
        got = 0
        try:
            while got < n:
                if not self._rest:
                    chunk, _ = await self._resp.content.readchunk()
                    if not chunk:
                        raise aiohttp.ClientPayloadError(f"response ended {n - got} bytes short")
                    self._rest = memoryview(chunk)
                k = min(n - got, len(self._rest))
                pieces.append(self._rest[:k])
                self._rest = self._rest[k:]
                got += k
        except (aiohttp.ClientError, TimeoutError) as e:
            self.close()
            raise self._disk._unreachable(e) from e
        self._left -= n
        self.position += n
        return b"".join(pieces)

    def close(self) -> None:
        if self._left:
            self._resp.close()      # bytes still on the way: the connection cannot be reused
        else:
            self._resp.release()
