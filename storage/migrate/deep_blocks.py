"""Pocket's bytes of one version for `verify --deep`, as the read path's checked blocks
instead of joined segments.

A GET joins the k data blocks of each segment into one bytes object to send it; a
comparison does not need that copy (memmove ~5 % of a large `--deep`, perf): the blocks
are views into what was read from the disks, each already checked against its record's
checksum by the reader (objects/get.py `ArchiveReader.blocks`, the same fetch as a GET:
data fragments preferred, a parity fragment read and the damage reported where a record
fails). A segment that lacks a data block is decoded, as a GET decodes it.

Windows are larger than a GET's (WINDOW_BYTES against 4 MiB): a verify sends nothing to
a client waiting for its first byte, and each window costs a thread hop per fragment for
the read and one for the checksums, whatever its size.

An encrypted version is read through objects/reads.py as before: its segments must be
whole to be opened.

Archives on this machine's disks are mapped, not read (`Maps`; node/archives.py
`map_file`): the records are hashed and compared where the page cache holds them, and
one thread hop maps all of a part's archives for both the read and the archive checks
(deep.py), where each read of a window or of a header cost a hop of its own.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable

from .. import layout
from ..codec import Codec
from ..index import parts as P
from ..objects.get import ArchiveReader

WINDOW_BYTES = 16 << 20


def readable(record: dict) -> bool:
    """Whether `views` can read the version: not encrypted, as a whole or in any part."""
    pieces = record["parts"] if P.is_multipart(record) else [record]
    return not record.get("sse") and not any(p.get("sse") for p in pieces)


def pieces(record: dict) -> list[dict]:
    """What holds the version's bytes, in order: the record, or each part's record."""
    return [P.part_record(record, p) for p in record["parts"]] if P.is_multipart(record) else [record]


class Maps:
    """Each piece's archives on local disks that are up, mapped in one thread hop when the
    first of its `users` asks, and let go when the last is done with them (the pages stay
    in the page cache; only the mapping goes).

    Let go in a thread too: munmap waits for the process's memory map lock, which the
    threads hashing mapped pages hold while they fault them in, and on the event loop
    that wait stopped everything (0.36-1.8 s of wall time per 8 x 128 MiB, 0.04 s of
    CPU, load 13). So the users keep no view of a mapping past `done`."""

    def __init__(self, cluster, users: int):
        self.cluster, self.users = cluster, users
        self._of: dict[str, tuple[asyncio.Future, list[int]]] = {}

    async def of(self, piece: dict) -> dict[int, memoryview]:
        vid = piece["version_id"]
        if vid not in self._of:
            self._of[vid] = (asyncio.get_running_loop().run_in_executor(None, self._map, piece), [self.users])
        return await self._of[vid][0]

    def done(self, piece: dict) -> None:
        got = self._of.get(piece["version_id"])
        if got is not None:
            got[1][0] -= 1
            if not got[1][0]:
                del self._of[piece["version_id"]]
                if got[0].done() and not got[0].cancelled() and got[0].exception() is None:
                    mapped = got[0].result()
                    got = None
                    asyncio.get_running_loop().run_in_executor(None, mapped.clear)

    def _map(self, piece: dict) -> dict[int, memoryview]:
        out = {}
        volume = self.cluster.volumes.get(piece["volume"])
        for i, disk_id in enumerate(volume["disks"] if volume else ()):
            disk = self.cluster.disks.get(disk_id)
            if hasattr(disk, "map_archive") and self.cluster.is_up(disk_id):
                try:
                    view = disk.map_archive(layout.archive_name(piece["version_id"], i))
                except (OSError, ValueError):   # missing, or not mappable: read as before, which reports it
                    continue
                if view is not None:
                    out[i] = view
        return out


async def views(cluster, record: dict, on_damage: Callable[[list], None], maps: Maps) -> AsyncIterator:
    """The version's bytes in order, as checked blocks (views) or decoded segments; the
    damage the reads found goes to `on_damage` as each part's read ends."""
    for piece in pieces(record):
        try:
            if piece["size"]:
                async for view in _piece(cluster, piece, on_damage, await maps.of(piece)):
                    yield view
                view = None
        finally:
            maps.done(piece)


async def _piece(cluster, piece: dict, on_damage, mapped: dict[int, memoryview]) -> AsyncIterator:
    codec = Codec(piece["k"], piece["m"])
    geo = layout.geometry(piece, codec.k)
    reader = ArchiveReader(cluster, codec, piece, cluster.volumes[piece["volume"]], window_bytes=WINDOW_BYTES,
                           mapped=mapped)
    loop = asyncio.get_running_loop()
    j = 0
    try:
        async for blocks in reader.blocks(0, geo.segments - 1):
            length = geo.segment_length(j)
            j += 1
            if all(i in blocks for i in range(codec.k)):
                for i in range(codec.k):      # the last segment's blocks end in padding
                    block = blocks[i]
                    if length <= len(block):
                        if length:
                            yield block[:length] if length < len(block) else block
                        break
                    yield block
                    length -= len(block)
            else:
                yield await loop.run_in_executor(None, codec.decode, blocks, length)
    finally:
        reader.close()
        if reader.damage:
            on_damage(reader.damage)
