"""Small reads and stats of one disk asked together: PUT /v1/{disk}/fetch.

Rebuilding a lost disk is mostly small archives (every replicated object, and the
fragments of erasure-coded ones up to a few MiB), and each cost the repairer one HEAD on
the disk being rebuilt and one GET per source fragment: ~0.3-0.4 ms of CPU per request
across both ends whatever it carried, most of a small archive's repair outside the
interpreter (measured on this 2-core box, 296 small archives read from one node). So a
RemoteDisk sends the stats and the reads up to `PIECE` bytes that callers ask of one
disk while its previous fetch is on the way as one request (batch.Coalescer, as small
writes go), and the node answers them in one thread hop.

The body is batch.py's list of operations: STAT (no data) or READ (data: offset and
length, little-endian u64s; WHOLE for the whole archive), tagged whole like a batch. The
answer is one outcome per operation, in order: status (u16: 200, 404, 400, 422, 500),
length (u32), then that many bytes: a read's bytes, a stat's size in decimal, an error's
message. Bytes read are not tagged, as a GET's are not: every record carries a keyed
checksum its reader checks.
"""
from __future__ import annotations

import struct

from .. import layout
from .store import INLINE_READ, ArchiveMissing, BadName, DiskStore

STAT, READ = b"S", b"G"
KINDS = (STAT, READ)
WHOLE = 1 << 62            # a READ's length for "to the archive's end"
PIECE = 1 << 20            # reads longer than this stream on their own (client.RangeStream)
WHOLE_WEIGHT = PIECE       # what a whole read counts for in a fetch's bytes: callers read only small archives whole
MAX_OPS, MAX_BYTES = 64, 16 << 20   # per fetch: the answer is held whole on both sides
_SPAN = struct.Struct("<QQ")
_OUTCOME = struct.Struct("<HI")


class BadAnswer(ValueError):
    """A fetch answer that does not parse."""


def span(offset: int, length: int) -> bytes:
    return _SPAN.pack(offset, min(length, WHOLE))


def weight(length: int) -> int:
    """How much of a fetch's MAX_BYTES a read takes (the Coalescer's bound on one batch)."""
    return WHOLE_WEIGHT if length >= WHOLE else length


def serve(store: DiskStore, ops: list[tuple[bytes, str, bytes]]) -> bytes:
    """Every operation's outcome, read in the calling thread (the node runs this in one hop)."""
    out = []
    for kind, name, data in ops:
        status, payload = _one(store, kind, name, data)
        out += [_OUTCOME.pack(status, len(payload)), payload]
    return b"".join(out)


def serve_cached(store: DiskStore, ops: list[tuple[bytes, str, bytes]]) -> bytes | None:
    """`serve` on the event loop, when every operation is a packed archive's stat or a
    read of one the page cache holds (files.read_cached), up to INLINE_READ bytes in all
    (what the loop copies without a pause worth a thread); None otherwise, and the caller
    hops to a thread as before. The hop was ~100 us of the node's CPU per fetch (a
    thread woken, the loop woken back) against ~10 us for the read itself, and a small
    GET's fetch is one such read."""
    out, total = [], 0
    for kind, name, data in ops:
        size = store.packs.archive_size(name)
        if kind == READ:
            total += size or 0
        if size is None or total > INLINE_READ or (kind == READ and len(data) != _SPAN.size):
            return None     # a file (its stat or open could wait for the disk), too much, or an error to report
        if kind == STAT:
            payload = str(size).encode()
        else:
            try:
                payload = store.packs.read_archive(name, *_SPAN.unpack(data), cached_only=True)
            except BlockingIOError:
                return None
            if payload is None:     # deleted meanwhile
                return None
        out += [_OUTCOME.pack(200, len(payload)), payload]
    return b"".join(out)


def _one(store: DiskStore, kind: bytes, name: str, data: bytes) -> tuple[int, bytes]:
    try:
        if kind == STAT:
            size = store.stat_now(name)
            return (404, b"") if size is None else (200, str(size).encode())
        if len(data) != _SPAN.size:
            return 400, b"a read names its offset and length in 16 bytes"
        return 200, store.read_now(name, *_SPAN.unpack(data))
    except BadName as e:
        return 400, str(e).encode()
    except ArchiveMissing:
        return 404, b"no such archive"
    except layout.CorruptFragment as e:
        return 422, f"corrupt: {e}".encode()
    except OSError as e:
        return 500, repr(e).encode()


def outcomes(body: bytes, count: int) -> list[tuple[int, memoryview]]:
    """(status, payload) of each of `count` operations, payloads as views into `body`."""
    view, pos, out = memoryview(body), 0, []
    for _ in range(count):
        if len(body) - pos < _OUTCOME.size:
            raise BadAnswer(f"answer ends after {len(out)} of {count} outcomes")
        status, size = _OUTCOME.unpack_from(body, pos)
        pos += _OUTCOME.size
        if pos + size > len(body):
            raise BadAnswer(f"outcome {len(out)} is longer than the answer")
        out.append((status, view[pos:pos + size]))
        pos += size
    if pos != len(body):
        raise BadAnswer(f"{len(body) - pos} bytes after the last of {count} outcomes")
    return out
