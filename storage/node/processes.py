"""A node served by several processes on its one address, each owning some of its disks.

Why: one Python process does its request handling on one core, and a server with 12-60
disks has 16-64. `[[nodes]] processes` (0: one per core, at most one per disk) forks that
many processes (cli/serve_node.py, with storage/workers.py's supervisor) that accept on
the node's one listening socket, so the gateway's `url` and the node link stay as they are.

Packs have one writer, so each disk is owned by exactly one process (`owners`: the flock
of ownership.py says which, to the one-shot commands as before), which runs its scrubber
and compactor. A request lands on whichever process accepts its connection; for a disk a
sibling owns (`Front`):

- reads of archive files and writes of archives too large for a pack are served where
  they land, in the disk folder, as a gateway worker does beside the disk owner of
  `pocket up` (owned_disk.py): a temp file under tmp/, fsync'd and renamed; every record
  is checked by its reader. Sending those bytes through a sibling would cost about as
  much CPU again as serving them, and the extra core would buy nothing;
- everything else (small archives, records, deletes, batches, fetches, listings, scrub)
  is forwarded whole to the owner over a unix socket in a folder only this node's user
  can reach, headers unchanged: the owner checks the request's MAC again and its body tag
  as ever, but not its nonce, which the process it arrived at admitted in the nonces all
  processes share (shared_replay.py: a replay lands on any process and is refused).

The alternative, the gateway reaching each disk's process at an address of its own,
would have operators open and manage a port per disk. One process per node with a thread
per disk would not use more cores: the request handling is Python under one GIL.

/v1/health and /metrics cover every disk: the process asked answers for its own and asks
its siblings for theirs (a sibling that is restarting or stuck leaves its disks out, so the
gateway sees those, not the whole node, down). A sibling is given half of
`storage.node_timeout` to answer, and one that is slow is answered for with its last
answer until that is `node_timeout` old: slow is not dead for a sibling either (as for a
node, cluster.py), while one stuck process, were it waited for as long as the gateway
waits for the node, would have every disk of its node marked down. One not listening
(restarting) is left out at once.
"""
from __future__ import annotations

import asyncio
import os
import time

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from yarl import URL

from ..metrics import MULTIPROC_ENV, SiblingsCollector
from . import auth
from .archives import head_of
from .client import _chain
from .metrics import DiskCollector, ForwardedDiskMetrics
from .server import _BODY_CHUNK as BODY_CHUNK, store_archive
from .store import DiskStore

_PASSED = ("Content-Type", auth.LINK_HEADER)   # response headers a forwarded answer keeps
# the sibling's answer may take as long as its disk does: the gateway's own timeout
# (storage.node_timeout) ends a request that hangs, and cancels the forwarding with it
_SIBLING_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5)
HEALTH_FRESH = 1.0   # seconds an answer to /v1/health is reused (Front._health)


def owners(disk_ids: list[str], processes: int) -> dict[str, int]:
    """Which process owns each disk: in config order, round robin, so that a node's disks
    (and the load on them) spread evenly and a restart gives each the same owner."""
    return {disk_id: i % processes for i, disk_id in enumerate(disk_ids)}


def socket_path(run_dir: str, process: int) -> str:
    return os.path.join(run_dir, f"process-{process}.sock")


class Trusted:
    """The replay check of a process's unix listener: what arrives there was admitted
    where it arrived (only this node's processes can reach the folder of the socket)."""

    @staticmethod
    def admit(_nonce: str, _stamp: int) -> None:
        return None


class Front:
    """The middleware (after authentication) of a process's public listener: a request for
    a disk it owns is served here; for a sibling's disk, as the module docstring says."""

    def __init__(self, me: int, node_id: str, secret: str, owner: dict[str, int], owned: dict[str, DiskStore],
                 beside: dict[str, DiskStore], run_dir: str, pack_threshold: int, quota_disks: set[str],
                 node_timeout: float):
        self.me, self.node_id, self.secret = me, node_id, secret
        self.node_timeout = node_timeout
        self.sibling_health = aiohttp.ClientTimeout(total=node_timeout / 2)
        self._last_heard: dict[int, tuple[float, list[dict]]] = {}   # sibling: (when, its disks)
        self.owner, self.owned, self.beside = owner, owned, beside
        self.pack_threshold = pack_threshold
        self.filed_here = {d for d in beside if d not in quota_disks}   # a quota is counted by its owner alone
        self._ready: set[str] = set()
        self._usage: asyncio.Future | None = None    # the latest gathering of every disk's usage
        self._health_at = 0.0
        self.siblings = {n: aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path(run_dir, n)),
                                                  auto_decompress=False)
                         for n in sorted(set(owner.values())) if n != me}

    async def close(self) -> None:
        for session in self.siblings.values():
            await session.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        disk = request.match_info.get("disk")
        if disk is None:
            if request.path == "/v1/health":
                return await self._health()
            if request.path == "/metrics":
                return await self._metrics()
            return await handler(request)
        owner = self.owner.get(disk, self.me)
        if owner == self.me:
            return await handler(request)
        resource = request.match_info.route.resource
        if resource is not None and resource.canonical == "/v1/{disk}/archives/{name}":
            store = self.beside[disk]
            name = request.match_info["name"]
            if request.method == "GET" and os.path.isfile(store.archive_path(name)):
                return await handler(request)     # a file: read here (a packed one is the owner's)
            if request.method == "PUT" and self._files_here(disk):
                stream = request.content.iter_chunked(BODY_CHUNK)
                head, _, whole = await head_of(stream, self.pack_threshold)
                if not whole:
                    return await store_archive(request, store, _chain(head, stream))
                return await self._forward(request, owner, b"".join(head))
            if request.method == "PUT":     # a quota's disk, or one still being laid out: any size
                return await self._forward(request, owner, request.content.iter_chunked(BODY_CHUNK))
        # batches and fetches (1 MiB at most, as their handlers read them): sent whole, one
        # write with a length instead of a chunked stream (py-spy: ~4 % of a process's samples)
        return await self._forward(request, owner, await request.read() if request.method == "PUT" else None)

    def _files_here(self, disk: str) -> bool:
        """Whether archive files may be written here: no quota, and the owner has laid out the folder."""
        if disk not in self._ready and disk in self.filed_here:
            store = self.beside[disk]
            if os.path.isdir(store.tmp_folder) and os.path.isdir(os.path.join(store.root, "archives")):
                self._ready.add(disk)
        return disk in self._ready

    async def _forward(self, request: web.Request, owner: int, body) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-pocket-")}
        resp = None
        try:
            # the path as it came, byte for byte: the MAC the owner checks again covers it
            url = URL("http://node" + request.raw_path, encoded=True)
            async with self.siblings[owner].request(request.method, url, headers=headers, data=body,
                                                    timeout=_SIBLING_TIMEOUT) as upstream:
                passed = {k: upstream.headers[k] for k in _PASSED if k in upstream.headers}
                length = upstream.content_length
                if length is not None and length <= BODY_CHUNK:   # batches, fetches, packed archives: one write
                    return web.Response(status=upstream.status, body=await upstream.read(), headers=passed)
                resp = web.StreamResponse(status=upstream.status, headers=passed)
                if length is not None:
                    resp.content_length = length
                await resp.prepare(request)
                async for chunk in upstream.content.iter_chunked(BODY_CHUNK):   # listings, long packed ranges
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            if resp is not None:
                raise     # the answer has begun: cutting the connection is what tells the client
            return web.json_response({"error": f"disk {request.match_info['disk']} is served by process {owner} "
                                               f"of node {self.node_id}, which did not answer: {e!r}"}, status=503)

    async def _health(self) -> web.Response:
        """Every disk's usage, gathered at most once per HEALTH_FRESH seconds: a gateway's
        heartbeat asks once per disk, all at once, and every worker of every gateway does,
        so a node of 60 disks and 16 processes would otherwise send its siblings some
        hundreds of requests a second to say the same thing."""
        if self._usage is None or (self._usage.done() and time.monotonic() - self._health_at > HEALTH_FRESH):
            self._health_at = time.monotonic()
            self._usage = asyncio.ensure_future(self._every_disk())
        return web.json_response({"node": self.node_id, "disks": await asyncio.shield(self._usage)})

    async def _every_disk(self) -> list[dict]:
        disks = [store.usage() for store in self.owned.values()]
        for theirs in await asyncio.gather(*(self._sibling_health(n) for n in self.siblings)):
            disks += theirs
        return disks

    async def _sibling_health(self, sibling: int) -> list[dict]:
        headers = auth.sign(self.secret, "GET", "/v1/health", self.node_id)
        try:
            async with self.siblings[sibling].get("http://node/v1/health", headers=headers,
                                                  timeout=self.sibling_health) as r:
                if r.status == 200:
                    disks = (await r.json())["disks"]
                    self._last_heard[sibling] = (time.monotonic(), disks)
                    return disks
        except asyncio.TimeoutError:    # slow or stuck: its last answer stands for a while
            heard_at, disks = self._last_heard.get(sibling, (0.0, []))
            if time.monotonic() - heard_at < self.node_timeout:
                return disks
        except (aiohttp.ClientError, ValueError):
            pass
        return []      # not there (restarting), or stuck for node_timeout: its disks read as down

    async def _metrics(self) -> web.Response:
        """Request counters summed over every process (prometheus_client's multiprocess
        files, as the gateway's workers do), this process's own figures, and the disk
        families of every disk: its own read now, its siblings' from their /metrics."""
        registry = CollectorRegistry()
        if MULTIPROC_ENV in os.environ:
            SiblingsCollector(registry)
        ProcessCollector(registry=registry)
        families = list(DiskCollector(self.owned).collect())
        for session in self.siblings.values():
            theirs = ForwardedDiskMetrics(["http://node"])
            await theirs.fetch(session)
            families += theirs.families
        registry.register(_Merged(families))
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


class _Merged:
    """Families of one name from several processes as one family (a name twice in an
    exposition is refused by Prometheus)."""

    def __init__(self, families: list):
        self.families = families

    def collect(self):
        merged: dict = {}
        for family in self.families:
            if family.name in merged:
                merged[family.name].samples.extend(family.samples)
            else:
                merged[family.name] = family
        yield from merged.values()
