"""Small copied versions handed to the running gateway instead of written by the copy.

A `pocket migrate copy` beside a gateway that runs the disks in its own process opens
them itself (tools/cluster.py attaches to folders a running process owns): it may write
files and records, but the packs are the gateway's, so every small object it stored
paid its own fsyncs. The gateway group-commits small objects into its packs
(bench/RESULTS.md, Session 6: 1,000 x 4 KiB from ~3.1 s to ~2.3 s).

So the copy sends each delete marker and each single-PUT object it read whole (at most
MAX_OBJECT bytes) to `PUT /_pocket/migrate/copy` on the S3 port, with the same
`copier.Write` it would store itself; the gateway stores it with `copier.store` through
its plain (unrouted) object service: one call, so the two paths cannot drift. Every
digest the copy would check (the source's ETag as Content-MD5, its checksums) is checked
by the gateway as the body goes in.

The request is signed like the node API (node/auth.py: an HMAC of the cluster secret
over method, path, audience, timestamp and nonce, and a tag after the body), and its
(timestamp, nonce) is recorded in the index before anything is written, so a replay is
refused by every gateway process and after a restart. A refused or unanswered request
makes the copy write that object itself, and, when the route itself is missing or
refuses, every later one too.
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
from dataclasses import asdict

import aiohttp
from aiohttp import web

from ..index import migrations as M
from ..node import auth
from ..s3 import errors
from ..tools.cluster import gateway_url, gateway_view
from .copier import CHUNK, Write, store, whole

log = logging.getLogger("pocket.migrate.copy")

PATH = "/_pocket/migrate/copy"
AUDIENCE = "gateway/migrate-copy"   # the MAC names it: a request signed for a node is not valid here
ROUTE_HEADER = "X-Pocket-Copy-Route"  # on every answer of this route: an older gateway's 4xx lacks it
MAX_OBJECT = CHUNK
_MAX_HEAD = 1 << 16             # the JSON of a Write: attrs with metadata (2 KiB in S3) and tags
_LENGTH = struct.Struct(">I")


# ---- the gateway's side --------------------------------------------------------------------------
async def receive(http: web.Request, gateway) -> web.Response:
    """Store one copied version; 403 AccessDenied, with nothing written, unless the request
    is signed with the cluster secret, its body is the signed one, and it was not seen before."""
    secret = gateway.cfg.cluster_secret
    why = auth.authentic(secret, http.method, http.raw_path, AUDIENCE, http.headers)
    if why:
        log.warning("refused a migrate copy request from %s: %s", http.remote, why)
        raise errors.AccessDenied()
    length = http.content_length
    if length is None or length > _LENGTH.size + _MAX_HEAD + MAX_OBJECT + auth.TAG_SIZE:
        raise errors.InvalidRequest("A migrate copy request needs a Content-Length, and carries small objects only.")
    try:
        raw = await http.content.readexactly(length)
    except asyncio.IncompleteReadError:
        raise errors.IncompleteBody() from None
    try:
        signed = auth.check_tagged(secret, http.headers, raw)
    except auth.BadBody as e:
        log.warning("refused a migrate copy request from %s: %s", http.remote, e)
        raise errors.AccessDenied() from None
    write, data = _unpack(signed)
    stamp, nonce = int(http.headers[auth.TIME_HEADER]), http.headers[auth.NONCE_HEADER]
    # committed before anything is written, though it costs an index commit per request:
    # checked instead in the version's own commit, two copies of a request sent at once
    # both wrote archives of the same names, and removing the refused one's took the other's
    if not await gateway.writer.submit(lambda ops: M.admit_nonce(ops, stamp, nonce, auth.MAX_SKEW)):
        log.warning("refused a migrate copy request from %s: nonce already used (a replayed request)", http.remote)
        raise errors.AccessDenied()
    with gateway.upload_slots.claim():
        record = await store(gateway.migration.objects, write, whole(data)) or {}
    return web.json_response({"version_id": record.get("version_id"), "etag": record.get("etag")})


def _unpack(signed: bytes) -> tuple[Write, bytes]:
    """The Write and the object's bytes; a signed body that does not parse is a sender's bug."""
    try:
        (n,) = _LENGTH.unpack_from(signed)
        head = json.loads(signed[_LENGTH.size:_LENGTH.size + n])
        write = Write(**head)
        kinds = ((write.bucket, str), (write.key, str), (write.size, int), (write.want, dict), (write.attrs, dict),
                 (write.version_id, str), (write.marker, (dict, type(None))))
        if not all(isinstance(value, kind) for value, kind in kinds):
            raise TypeError("a field of the wrong type")
    except (struct.error, ValueError, TypeError) as e:
        raise errors.InvalidRequest(f"Malformed migrate copy request: {e}") from None
    data = signed[_LENGTH.size + n:]
    if write.marker is None and len(data) != write.size:
        raise errors.IncompleteBody()
    return write, data


# ---- the copy's side -----------------------------------------------------------------------------
async def sender_for(cfg, tc) -> "Sender | None":
    """A Sender when it pays: the copy would open disks itself (tc.direct: the nodes do not
    answer over the network, so a gateway runs them) and a gateway of this cluster answers."""
    if not tc.direct or not cfg.cluster_secret or await gateway_view(cfg) is None:
        return None
    log.info("small objects go through the running gateway at %s", gateway_url(cfg))
    return Sender(gateway_url(cfg), cfg.cluster_secret)


def signed_request(secret: str, write: Write, data: bytes) -> tuple[dict[str, str], bytes]:
    """The headers and body of PUT PATH for one version: its Write as JSON after its
    length, then its bytes, then the body's tag."""
    headers = auth.sign(secret, "PUT", PATH, AUDIENCE)
    head = json.dumps(asdict(write), separators=(",", ":")).encode()
    return headers, auth.tag(secret, headers, _LENGTH.pack(len(head)) + head + data)


def will_hand_over(cfg) -> bool:
    """`sender_for`'s answer as far as it can be known before the cluster is opened (the
    copy's default worker count): some node runs inside the gateway, and the gateway answers."""
    return bool(cfg.cluster_secret) and any(not node.url for node in cfg.nodes) and \
        asyncio.run(gateway_view(cfg)) is not None


class Sender:
    def __init__(self, url: str, secret: str):
        self.url, self.secret = url + PATH, secret
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        self.written = 0
        self.off: str | None = None     # why the gateway is not used any more

    async def close(self) -> None:
        await self.session.close()

    async def send(self, write: Write, data: bytes) -> dict | None:
        """Store `write` through the gateway: its answer, or None when the copy must write it itself."""
        if self.off is not None or len(data) > MAX_OBJECT:
            return None
        headers, body = signed_request(self.secret, write, data)
        log.debug("handing %s/%s version %s to the gateway", write.bucket, write.key, write.version_id)
        try:
            async with self.session.put(self.url, data=body, headers=headers) as r:
                answer = await r.read()
                if r.headers.get(ROUTE_HEADER) != "1" or r.status == 403:
                    self._give_up(f"it answered {r.status} {answer[:200]!r}")
                    return None
                if r.status != 200:
                    log.warning("the gateway could not store %s/%s (%d %s); writing it here",
                                write.bucket, write.key, r.status, answer[:300])
                    return None
                self.written += 1
                return json.loads(answer)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            self._give_up(repr(e))
            return None

    def _give_up(self, why: str) -> None:
        if self.off is None:
            self.off = why
            log.warning("writing every object here from now on: the gateway's copy route is not usable (%s)", why)
