"""Streaming a byte range of one object version: its parts, its segments, decrypted.

Split from the object service so reading has one home: which segments a range needs
(`segment_size` is the plaintext segment; layout.geometry finds them on the disks),
the archive reader that fetches them (get.py), and for an encrypted version the cipher
that opens each segment it read, and only those (crypto/segments.py).
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable

from ..cluster import Cluster
from ..codec import Codec
from ..crypto.keys import Keyring
from ..crypto.segments import SegmentCipher, Tampered
from ..index import parts
from .contracts import VersionRecord
from .get import ArchiveReader, Unreadable

_INLINE_BYTES = 64 << 10   # below this, decrypting on the loop beats a thread hop


def stream(cluster: Cluster, keys: Keyring | None, record: VersionRecord, start: int, end: int,
           on_damage: Callable | None, customer_key: bytes | None) -> AsyncIterator[bytes]:
    """Bytes start..end (inclusive) of a version, a multipart object's parts in order."""
    if parts.is_multipart(record):
        return _parts(cluster, keys, record, start, end, on_damage, customer_key)
    return _version(cluster, keys, record, start, end, on_damage, customer_key)


async def _parts(cluster, keys, record, start, end, on_damage, customer_key) -> AsyncIterator[bytes]:
    for part, first, last in parts.spans(record, start, end):
        async for chunk in _version(cluster, keys, parts.part_record(record, part), first, last, on_damage,
                                    customer_key):
            yield chunk


async def _version(cluster, keys, record, start, end, on_damage, customer_key) -> AsyncIterator[bytes]:
    if record["size"] == 0 or end < start:
        return
    seg = record["segment_size"]
    first, last = start // seg, end // seg
    segments = _stored(cluster, record, first, last, on_damage)
    if record.get("sse"):
        what = f"{record['bucket']}/{record['key']} version {record['version_id']}"
        segments = _opened(segments, keys.opener(record["sse"], record["version_id"], customer_key), first, what)
    async for n, data in _enumerate(segments, first):
        lo = start - n * seg if n == first else 0
        hi = end - n * seg + 1 if n == last else len(data)
        yield data[lo:hi] if (lo, hi) != (0, len(data)) else data


async def _stored(cluster: Cluster, record: VersionRecord, first: int, last: int, on_damage) -> AsyncIterator[bytes]:
    """Segments first..last as stored (ciphertext for an encrypted version)."""
    reader = ArchiveReader(cluster, Codec(record["k"], record["m"]), record, cluster.volumes[record["volume"]])
    try:
        async for data in reader.segments(first, last):
            yield data
    finally:
        reader.close()
        if reader.damage and on_damage:
            on_damage(reader.damage)


async def _opened(segments: AsyncIterator[bytes], cipher: SegmentCipher, first: int,
                  what: str) -> AsyncIterator[bytes]:
    """Decrypt segments first, first+1, ...; a failed tag reads like a segment with too few
    good fragments (Unreadable): it passed the keyed checksums, so no copy is better."""
    loop = asyncio.get_running_loop()
    async for n, data in _enumerate(segments, first):
        try:
            if len(data) <= _INLINE_BYTES:
                yield cipher.open(n, data)
            else:
                yield await loop.run_in_executor(None, cipher.open, n, data)
        except Tampered as e:
            raise Unreadable(f"{what}: {e}. Its fragments pass their keyed checksums, so they were changed "
                             "by someone holding the cluster secret (or written wrongly): restore this object "
                             "from another copy") from None


async def _enumerate(it: AsyncIterator, start: int):
    n = start
    async for item in it:
        yield n, item
        n += 1
