"""Small copied versions handed to the running gateway instead of written by the copy.

A `pocket migrate copy` beside a gateway that runs the disks in its own process opens
them itself (tools/cluster.py attaches to folders a running process owns): it may write
files and records, but the packs are the gateway's, so every small object it stored
paid its own fsyncs. The gateway group-commits small objects into its packs
(bench/RESULTS.md, Session 6: 1,000 x 4 KiB from ~3.1 s to ~2.3 s).

So the copy sends delete markers and single-PUT objects it read whole (at most
MAX_OBJECT bytes each) to `PUT /_pocket/migrate/copy` on the S3 port, with the same
`copier.Write` it would store itself; the gateway stores each with `copier.store` through
its plain (unrouted) object service: one call, so the two paths cannot drift. Every
digest the copy would check (the source's ETag as Content-MD5, its checksums) is checked
by the gateway as the body goes in.

Versions travel in batches (up to MAX_BATCH of them, MAX_BATCH_BYTES of bodies): what
the copy's tasks hand over while a request is on its way goes in the next one, so a
busy copy pays one request, one signature check and one nonce commit for many versions,
and the gateway stores a batch's versions at once (their pack appends and index records
commit together). Each version of a batch succeeds or fails alone.

The request is signed like the node API (node/auth.py: an HMAC of the cluster secret
over method, path, audience, timestamp and nonce, and a tag after the body), and its
(timestamp, nonce) is recorded in the index before anything is written, so a replay is
refused by every gateway process and after a restart. A refused or unanswered request
makes the copy write those versions itself, and, when the route itself is missing, of
another version, or refuses, every later one too.
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from typing import TYPE_CHECKING

from ..index import migrations as M
from ..node import auth
from ..s3 import errors
from ..tools.cluster import gateway_ready, gateway_ssl, gateway_url
from .copier import CHUNK, Write, store, whole

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("pocket.migrate.copy")

PATH = "/_pocket/migrate/copy"
AUDIENCE = "gateway/migrate-copy"   # the MAC names it: a request signed for a node is not valid here
ROUTE_HEADER = "X-Pocket-Copy-Route"  # on every answer of this route: an older gateway's 4xx lacks it
ROUTE_VERSION = "2"                   # batches; "1" (session 6) took one version per request
MAX_OBJECT = CHUNK
MAX_BATCH = 64                  # versions in one request
MAX_BATCH_BYTES = 4 * CHUNK     # their bodies together: what a gateway holds in memory per request
REQUESTS = 4                    # batches a copy process has on their way at once
RETRY_AFTER = 30.0              # seconds before a gateway that stopped answering is tried again
_MAX_HEAD = 1 << 16             # the JSON of a Write: attrs with metadata (2 KiB in S3) and tags
_LENGTH = struct.Struct(">I")
_MAX_REQUEST = MAX_BATCH * (_LENGTH.size + _MAX_HEAD) + MAX_BATCH_BYTES + auth.TAG_SIZE


# ---- the gateway's side --------------------------------------------------------------------------
async def receive(http: "aiohttp.web.Request", gateway) -> "aiohttp.web.Response":
    """Store a batch of copied versions; 403 AccessDenied, with nothing written, unless the
    request is signed with the cluster secret, its body is the signed one, and it was not
    seen before. The answer lists, in order, each version's record or its error."""
    secret = gateway.cfg.cluster_secret
    why = auth.authentic(secret, http.method, http.raw_path, AUDIENCE, http.headers)
    if why:
        log.warning("refused a migrate copy request from %s: %s", http.remote, why)
        raise errors.AccessDenied()
    length = http.content_length
    if length is None or length > _MAX_REQUEST:
        raise errors.InvalidRequest(f"A migrate copy request needs a Content-Length, and carries at most {MAX_BATCH} "
                                    f"small objects of {MAX_BATCH_BYTES} bytes in all.")
    try:
        raw = await http.content.readexactly(length)
    except asyncio.IncompleteReadError:
        raise errors.IncompleteBody() from None
    try:
        signed = auth.check_tagged(secret, http.headers, raw)
    except auth.BadBody as e:
        log.warning("refused a migrate copy request from %s: %s", http.remote, e)
        raise errors.AccessDenied() from None
    batch = unpack(signed)
    stamp, nonce = int(http.headers[auth.TIME_HEADER]), http.headers[auth.NONCE_HEADER]
    # committed before anything is written, though it costs an index commit per request:
    # checked instead in the version's own commit, two copies of a request sent at once
    # both wrote archives of the same names, and removing the refused one's took the other's
    if not await gateway.writer.submit(lambda ops: M.admit_nonce(ops, stamp, nonce, auth.MAX_SKEW)):
        log.warning("refused a migrate copy request from %s: nonce already used (a replayed request)", http.remote)
        raise errors.AccessDenied()
    with gateway.upload_slots.claim():
        answers = await asyncio.gather(*(_store_one(gateway, write, data) for write, data in batch))
    from aiohttp import web     # the gateway's side only: the copy does not load aiohttp's server
    return web.json_response(answers)


async def _store_one(gateway, write: Write, data: bytes) -> dict:
    """One version of a batch: its record's id and ETag, or the error the copy would have met
    storing it itself (it then does, and reports that)."""
    try:
        record = await store(gateway.migration.objects, write, whole(data)) or {}
    except errors.S3Error as e:
        return {"error": e.code, "message": e.message}
    except Exception as e:
        log.exception("storing a copied version of %s/%s failed", write.bucket, write.key)
        return {"error": "InternalError", "message": repr(e)[:300]}
    return {"version_id": record.get("version_id"), "etag": record.get("etag")}


def unpack(signed: bytes) -> list[tuple[Write, bytes]]:
    """The batch's Writes and bytes; a signed body that does not parse is a sender's bug,
    and refused whole (400) before anything is stored."""
    batch, at, total = [], 0, 0
    try:
        while at < len(signed):
            if len(batch) == MAX_BATCH:
                raise ValueError(f"more than {MAX_BATCH} versions")
            (n,) = _LENGTH.unpack_from(signed, at)
            at += _LENGTH.size
            if n > _MAX_HEAD:
                raise ValueError("a version's description is too long")
            write = Write(**json.loads(signed[at:at + n]))
            at += n
            kinds = ((write.bucket, str), (write.key, str), (write.size, int), (write.want, dict), (write.attrs, dict),
                     (write.version_id, str), (write.marker, (dict, type(None))))
            if not all(isinstance(value, kind) for value, kind in kinds):
                raise TypeError("a field of the wrong type")
            size = 0 if write.marker is not None else write.size
            if not 0 <= size <= MAX_OBJECT or at + size > len(signed):
                raise ValueError(f"{write.key!r}: its body is not the {write.size} bytes it claims")
            total += size
            if total > MAX_BATCH_BYTES:
                raise ValueError(f"more than {MAX_BATCH_BYTES} bytes of bodies")
            batch.append((write, signed[at:at + size]))
            at += size
    except (struct.error, ValueError, TypeError) as e:
        raise errors.InvalidRequest(f"Malformed migrate copy request: {e}") from None
    if not batch:
        raise errors.InvalidRequest("Malformed migrate copy request: no version in it")
    return batch


# ---- the copy's side -----------------------------------------------------------------------------
def sender_for(cfg, tc, hand_over: bool) -> "Sender | None":
    """A Sender when it pays: `will_hand_over` said yes, and the copy opened disks itself
    (tc.direct: the nodes do not answer over the network, so a gateway runs them)."""
    if not hand_over or not tc.direct:
        return None
    log.info("small objects go through the running gateway at %s", gateway_url(cfg))
    return Sender(gateway_url(cfg), cfg.cluster_secret, gateway_ssl(cfg))


def signed_request(secret: str, batch: list[tuple[Write, bytes]]) -> tuple[dict[str, str], bytes]:
    """The headers and body of PUT PATH for a batch: each version's Write as JSON after its
    length, then its bytes; then the body's tag."""
    headers = auth.sign(secret, "PUT", PATH, AUDIENCE)
    parts = []
    for write, data in batch:
        # vars, not dataclasses.asdict: asdict deep-copies every dict first (6 % of a small
        # object copy's CPU in a py-spy profile); a Write's fields are plain JSON values
        head = json.dumps(vars(write), separators=(",", ":")).encode()
        parts += [_LENGTH.pack(len(head)), head, data]
    return headers, auth.tag(secret, headers, b"".join(parts))


def will_hand_over(cfg) -> bool:
    """Whether small versions can go to the gateway, as far as it can be known before the
    cluster is opened: some node runs inside the gateway, and the gateway answers. Asked
    once per command, before its workers fork: the answer sets the default worker count
    and goes to every worker's `sender_for` (each asked again, ~10 ms of a small copy's start)."""
    return bool(cfg.cluster_secret) and any(not node.url for node in cfg.nodes) and gateway_ready(cfg) is not None


class Sender:
    """Hands versions to the gateway in batches: `send` queues one and waits for its answer;
    up to REQUESTS batches are on their way at once, each taking what was queued when it left.
    Its aiohttp session is made with the first batch: a copy that hands nothing over (an
    empty bucket, large objects only) never imports aiohttp (tools/cluster.py says why)."""

    def __init__(self, url: str, secret: str, ssl_check=True):
        self.url, self.secret, self.ssl_check = url + PATH, secret, ssl_check
        self.session: aiohttp.ClientSession | None = None
        self.written = 0
        self.requests = 0
        self.off: str | None = None     # why the gateway is not used (for now, or any more)
        self._retry_at: float | None = None   # when `off` is for now: the time to try again
        self._queued: list[tuple[Write, bytes, asyncio.Future]] = []
        self._flying = 0
        self._leaving = False           # a batch task is made and has not taken its versions yet
        self._tasks: set[asyncio.Task] = set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    async def send(self, write: Write, data: bytes) -> dict | None:
        """Store `write` through the gateway: its answer, or None when the copy must write it itself."""
        if self.off is not None and self._retry_at is not None and time.monotonic() >= self._retry_at:
            log.info("trying the running gateway again for small objects")
            self.off = self._retry_at = None
        if self.off is not None or len(data) > MAX_OBJECT:
            return None
        answer = asyncio.get_running_loop().create_future()
        self._queued.append((write, data, answer))
        self._launch()
        return await answer

    def _launch(self) -> None:
        # the task takes its batch when it starts, a loop turn later: what the other copy
        # tasks queue meanwhile goes with it
        if self._queued and not self._leaving and self._flying < REQUESTS:
            self._leaving, self._flying = True, self._flying + 1
            task = asyncio.get_running_loop().create_task(self._fly())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fly(self) -> None:
        self._leaving = False
        batch, size = [], 0
        while self._queued and len(batch) < MAX_BATCH and size + len(self._queued[0][1]) <= MAX_BATCH_BYTES:
            batch.append(self._queued.pop(0))
            size += len(batch[-1][1])
        self._launch()                  # what did not fit leaves in another request
        answers: list[dict | None] = [None] * len(batch)
        try:
            if batch and self.off is None:
                answers = await self._post([(write, data) for write, data, _ in batch])
        finally:
            self._flying -= 1
            for (_, _, future), answer in zip(batch, answers):
                if not future.done():
                    future.set_result(answer)
            self._launch()

    async def _post(self, batch: list[tuple[Write, bytes]]) -> list[dict | None]:
        import aiohttp
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl_check),
                                                 timeout=aiohttp.ClientTimeout(total=120))
        headers, body = signed_request(self.secret, batch)
        if log.isEnabledFor(logging.DEBUG):
            for write, _ in batch:
                log.debug("handing %s/%s version %s to the gateway", write.bucket, write.key, write.version_id)
        nothing: list[dict | None] = [None] * len(batch)
        try:
            async with self.session.put(self.url, data=body, headers=headers) as r:
                answer = await r.read()
                route = r.headers.get(ROUTE_HEADER)
                if route != ROUTE_VERSION:
                    self._give_up(f"it answered {r.status} {answer[:200]!r}" if route is None else
                                  f"it speaks copy route {route!r}, this copy {ROUTE_VERSION!r}: "
                                  "run the same Pocket release on the gateway and the copy")
                    return nothing
                if r.status == 403:
                    self._give_up(f"it answered {r.status} {answer[:200]!r}")
                    return nothing
                if r.status != 200:
                    log.warning("the gateway could not store %d versions (%d %s); writing them here",
                                len(batch), r.status, answer[:300])
                    return nothing
                results = json.loads(answer)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
            # a gateway restarted for an upgrade answers again soon: not for good
            self._give_up(repr(e), for_now=True)
            return nothing
        self.requests += 1
        out = []
        for (write, _), result in zip(batch, results):
            if "error" in result:
                log.warning("the gateway could not store %s/%s (%s: %s); writing it here",
                            write.bucket, write.key, result["error"], result.get("message", "")[:300])
                out.append(None)
            else:
                self.written += 1
                out.append(result)
        return out + nothing[len(out):]

    def _give_up(self, why: str, for_now: bool = False) -> None:
        if self.off is None:
            self.off = why
            if for_now:
                self._retry_at = time.monotonic() + RETRY_AFTER
                log.warning("writing every object here for %.0f s: the gateway's copy route did not answer (%s)",
                            RETRY_AFTER, why)
            else:
                log.warning("writing every object here from now on: the gateway's copy route is not usable (%s)", why)
