"""Pocket's bytes of one version for `verify --deep`, as the read path's checked blocks
instead of joined segments.

A GET joins the k data blocks of each segment into one bytes object to send it; a
comparison does not need that copy (memmove ~5 % of a large `--deep`, perf): the blocks
are views into what was read from the disks, each already checked against its record's
checksum by the reader (objects/get.py `ArchiveReader.blocks`, the same fetch as a GET:
data fragments preferred, a parity fragment read and the damage reported where a record
fails). A segment that lacks a data block is decoded, as a GET decodes it.

Windows of mapped archives (below) are larger than a GET's (WINDOW_BYTES against 4 MiB):
a verify sends nothing to a client waiting for its first byte, each window costs a thread
hop per fragment for the checksums whatever its size, and a window of a mapping holds no
memory of its own. Read over the node API, a window is a buffer per fragment, two of them
per version (one read ahead), so those keep the GET's size: a verify of 32 versions at
once would otherwise hold ~1 GiB.

An encrypted version is read through objects/reads.py as before: its segments must be
whole to be opened.

Archives on this machine's disks are mapped, not read (`mapped`; node/archives.py
`map_file`): the records are hashed and compared where the page cache holds them, and
one thread hop maps a part's archives, where each read of a window (and, for the
archive checks in deep.py, of a header, footer or trailer) cost a hop of its own.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Callable

from .. import layout
from ..codec import Codec
from ..index import parts as P
from ..objects import get

WINDOW_BYTES = 16 << 20
# Parts smaller than this are read, not mapped: their archives are small (packed below the
# pack threshold, 264 KiB), so a read's copy costs less than a map, an unmap and two hops,
# and a deep verify of 10,000 small objects pays no hop more than before.
MAP_FROM = 4 << 20


def readable(record: dict) -> bool:
    """Whether `views` can read the version: not encrypted, as a whole or in any part."""
    pieces = record["parts"] if P.is_multipart(record) else [record]
    return not record.get("sse") and not any(p.get("sse") for p in pieces)


def pieces(record: dict) -> list[dict]:
    """What holds the version's bytes, in order: the record, or each part's record."""
    return [P.part_record(record, p) for p in record["parts"]] if P.is_multipart(record) else [record]


@contextlib.asynccontextmanager
async def mapped(cluster, piece: dict, which) -> AsyncIterator[dict[int, memoryview]]:
    """Archives `which` (fragment indexes) of a piece that lie on this machine's disks,
    up, mapped in one thread hop: {index: the archive}. Let go in a thread as well: munmap
    waits for the process's memory-map lock, which threads hashing mapped records hold as
    they fault pages in, and on the event loop that wait stopped everything (0.36-1.8 s
    of wall time per 8 x 128 MiB at load 13, for 0.04 s of CPU). So a user keeps no view
    of the mapping past its block."""
    if piece["size"] < MAP_FROM:
        yield {}
        return
    loop = asyncio.get_running_loop()
    maps = await loop.run_in_executor(None, _map, cluster, piece, which)
    try:
        yield maps
    finally:
        if maps:
            loop.run_in_executor(None, maps.clear)


def _map(cluster, piece: dict, which) -> dict[int, memoryview]:
    out = {}
    volume = cluster.volumes.get(piece["volume"])
    for i in which if volume else ():
        disk_id = volume["disks"][i]
        disk = cluster.disks.get(disk_id)
        if hasattr(disk, "map_archive") and cluster.is_up(disk_id):
            try:
                view = disk.map_archive(layout.archive_name(piece["version_id"], i))
            except (OSError, ValueError):   # missing, or not mappable: read as before, which reports it
                continue
            if view is not None:
                out[i] = view
    return out


async def views(cluster, record: dict, on_damage: Callable[[list], None]) -> AsyncIterator:
    """The version's bytes in order, as checked blocks (views) or decoded segments; the
    damage the reads found goes to `on_damage` as each part's read ends."""
    for piece in pieces(record):
        if piece["size"]:
            async with mapped(cluster, piece, range(piece["k"])) as maps:
                async for view in _piece(cluster, piece, on_damage, maps):
                    yield view
                view = None


async def _piece(cluster, piece: dict, on_damage, maps: dict[int, memoryview]) -> AsyncIterator:
    codec = Codec(piece["k"], piece["m"])
    geo = layout.geometry(piece, codec.k)
    reader = get.ArchiveReader(cluster, codec, piece, cluster.volumes[piece["volume"]], mapped=maps,
                           window_bytes=WINDOW_BYTES if maps else get.WINDOW_BYTES)
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
