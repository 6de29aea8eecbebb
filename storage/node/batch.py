"""Small writes to one disk sent together: small archives, records and deletes, one request.

A request over the node API costs ~0.5 ms of CPU across gateway and node (auth, routing,
headers, two loopback writes) whatever it carries. A small DELETE writes a tombstone to
each of its volume's disks and then removes the archive from each: six requests for a
few hundred bytes, and at 16 clients most of the gateway's and all of the nodes' CPU
(py-spy); a small PUT sends three archives of a few KiB. The node appends what arrives
together to its packs with one fsync anyway (packs.py), so the client (`Coalescer`)
sends what callers ask of one disk while its previous batch is on the way as one
request, PUT /v1/{disk}/batch, and each caller gets its own outcome. Nothing is
acknowledged before the node's fsync, as before. The batch's tag is an HMAC over all of
its bytes (auth.tag), so an archive in it needs no skeleton tag (archive_tag.py): any
byte changed on the way fails the whole batch.

The body is a list of operations, each a kind byte, the name's length and the data's,
the name, the data; the answer a JSON list of outcomes in the same order.
"""
from __future__ import annotations

import asyncio
import struct

RECORD, DELETE, ARCHIVE = b"R", b"D", b"A"
FORGET = b"F"     # a delete that needs no fsync of its own (packs.PackSet.delete, durable=False)
SMALL_ARCHIVE = 192 << 10     # a replicated small object (up to 128 KiB) with room to spare
BATCH_BYTES = 256 << 10       # a batch's data, the gateway's: callers wait for the whole batch
# A one-shot command's (nobody waits on one op): as much data as a node takes in one body
# (1 MiB, node/server.py) less the operations' heads (256 at most, ~50 bytes each). A
# repair of small objects sent its rebuilt archives ~2 to a batch at BATCH_BYTES: 126
# batches for 264 sets, each a request and a pack commit on the node (cProfile).
BULK_BATCH_BYTES = 960 << 10
_OP = struct.Struct("<cHI")


class BadBatch(ValueError):
    """A batch body that does not parse: refused whole (400), nothing applied."""


def pack(ops: list[tuple[bytes, str, bytes]]) -> bytes:
    out = []
    for kind, name, data in ops:
        raw = name.encode()
        out += [_OP.pack(kind, len(raw), len(data)), raw, data]
    return b"".join(out)


def unpack(body: bytes, kinds=(RECORD, DELETE, ARCHIVE, FORGET)) -> list[tuple[bytes, str, bytes]]:
    """The operations of a body; one of a kind not in `kinds` refuses it whole."""
    ops, pos = [], 0
    while pos < len(body):
        if len(body) - pos < _OP.size:
            raise BadBatch("batch ends inside an operation's head")
        kind, name_len, data_len = _OP.unpack_from(body, pos)
        pos += _OP.size
        end = pos + name_len + data_len
        if kind not in kinds or end > len(body):
            raise BadBatch(f"operation {len(ops)}: unknown kind {kind!r} or longer than the batch")
        try:
            name = body[pos:pos + name_len].decode()
        except UnicodeDecodeError:
            raise BadBatch(f"operation {len(ops)}: name is not UTF-8") from None
        ops.append((kind, name, body[pos + name_len:end]))
        pos = end
    return ops


class Coalescer:
    """The client's side: operations on one disk, one request on the way at a time. The
    first goes at once, in a batch of its own; those asked for while it is on the way go
    together after it, up to `max_ops` or `max_bytes` of data (the node takes bodies up to
    1 MiB). At one client nothing waits; at many, the wait for a request already on the
    way is what a node's group commit cost anyway. A batch of one is no dearer than the
    operation's own request, and cheaper for an archive (one write, no chunked framing)."""

    def __init__(self, send, max_ops: int = 256, max_bytes: int = BATCH_BYTES):
        self._send_batch = send
        self.max_ops, self.max_bytes = max_ops, max_bytes
        self._queue: list = []
        self._sender: asyncio.Task | None = None

    async def submit(self, kind: bytes, name: str, data: bytes, weight: int | None = None):
        """The operation's outcome; `weight` is what it counts for against max_bytes
        (default: its data's length; a read's is what it brings back, fetch.py)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.append((kind, name, data, fut, len(data) if weight is None else weight))
        if self._sender is None:
            self._sender = loop.create_task(self._send())
        return await fut

    async def _send(self) -> None:
        group: list = []
        try:
            while self._queue:
                group = self._take()
                if not group:
                    continue
                try:
                    results = await self._send_batch([op[:3] for op in group])
                except Exception as e:
                    results = [e] * len(group)
                for (*_, fut, _weight), result in zip(group, results):
                    if fut.done():           # its caller gave up (a timeout)
                        continue
                    if isinstance(result, Exception):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
                group = []
        except BaseException:                # cancelled with the loop: no caller waits forever
            for *_, fut, _weight in group + self._queue:
                fut.cancel()
            self._queue = []
            raise
        finally:
            self._sender = None

    def _take(self) -> list:
        """The next batch, skipping operations whose callers gave up before it left."""
        size = count = 0
        for *_, weight in self._queue:
            if count and (count >= self.max_ops or size + weight > self.max_bytes):
                break
            count += 1
            size += weight
        group, self._queue = self._queue[:count], self._queue[count:]
        return [op for op in group if not op[3].done()]
