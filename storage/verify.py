"""Checking one whole fragment archive through a disk's public interface.

The disk scrubber (node/disk_scrub.py) and the repairer's second look read every byte
of an archive: the header (its own checksum, and that it names the archive it is in),
the footer and trailer (the manifest, checksummed), every record against its checksum,
and that the records end exactly where the trailer begins. Checksums are those of the
format the header names: keyed for format 2, xxh3 for archives written before keyed
checksums (reported as `legacy`, since the node cannot tell them from an unkeyed forgery:
the gateway can, from the object's record, see repair/scrub.py). Each byte is read once (small
archives in one request). Everything goes through `disk.read(name, offset, length)`, so
a local `DiskStore`, a `RemoteDisk` and bytes already in memory are checked the same
way, and the record format stays in layout.py. Reads are paced by the caller's `Throttle` (throttle.py).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import layout
from .throttle import Throttle

if TYPE_CHECKING:   # node/ imports this module: the disk type is for readers only
    from .node.disk import Disk

CHUNK_BYTES = 4 << 20     # records are read and checked a few MiB at a time
_INLINE_CHECK_BYTES = 1 << 20


class ArchiveBytes:
    """An archive already in memory, read through the same interface as a disk: as views,
    since slicing bytes copies them (a repair checks thousands of small archives whole, and
    the copies were a tenth of its GIL samples in py-spy)."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)

    async def read(self, _name: str, offset: int, length: int) -> memoryview:
        return self.data[offset:offset + length]


@dataclass
class Verdict:
    manifest: dict | None     # None when the trailer itself is unreadable
    problem: str | None       # None when every check passed
    bytes_read: int = 0
    legacy: bool = False      # a format-1 (unkeyed) archive that passed its checks


async def verify_archive(disk: Disk, name: str, size: int, pacer: Throttle, records: bool = True) -> Verdict:
    """Read and check all of one archive, every byte once. Raises FileNotFoundError if it
    vanished meanwhile. Archives up to CHUNK_BYTES are read in one request.

    `records=False`: all but the records (header, footer, manifest, where the records end),
    for a caller whose read checks every record anyway (`pocket migrate verify --deep`
    reads the data fragments through the GET path): a second pass over their checksums
    proves nothing and cost a read and a hash of every byte."""
    vid, _, idx = name.partition(".")
    verdict = Verdict(None, None)
    whole: bytes | None = None

    async def read(offset: int, length: int) -> bytes:
        if whole is not None:
            return whole[offset:offset + length]
        data = await disk.read(name, offset, length)
        verdict.bytes_read += len(data)
        await pacer.take(len(data))
        if len(data) != length:
            raise layout.CorruptFragment(f"archive shrank while being read ({len(data)} of {length} bytes "
                                         f"at offset {offset})")
        return data

    try:
        if size < layout.HEADER_SIZE + layout.FOOTER_SIZE:
            raise layout.CorruptFragment(f"archive is only {size} bytes")
        if size <= CHUNK_BYTES and records:
            whole = memoryview(await read(0, size))
        header = layout.ArchiveHeader.unpack(await read(0, layout.HEADER_SIZE), layout.ANY_FORMAT)
        verdict.legacy = header.fmt == layout.LEGACY_FORMAT
        if layout.archive_name(header.version_id, header.index) != name:
            raise layout.CorruptFragment(f"header names {header.version_id}.{header.index}")
        length, want = layout.unpack_footer(await read(size - layout.FOOTER_SIZE, layout.FOOTER_SIZE))
        trailer_at = size - layout.FOOTER_SIZE - length
        if trailer_at < layout.HEADER_SIZE:
            raise layout.CorruptFragment(f"footer claims a {length}-byte trailer in a {size}-byte archive")
        verdict.manifest = manifest = layout.unpack_trailer(bytes(await read(trailer_at, length)), want, header.fmt)
        if header.fmt not in layout.accepted(manifest):
            raise layout.CorruptFragment("an unkeyed archive whose manifest says the object is keyed (forged)")
        if manifest.get("version_id") != vid or (header.k, header.m) != (manifest.get("k"), manifest.get("m")):
            raise layout.CorruptFragment("header and manifest disagree about the object version or policy")
        geo = layout.Geometry(layout.stored_size(manifest), header.segment_size, header.k)
        if header.block_size != geo.block_size or geo.records_end() != trailer_at:
            raise layout.CorruptFragment(f"records end at {trailer_at}, the manifest says {geo.records_end()}")
        if records:
            await _check_records(read, geo, frozenset({header.fmt}))
    except layout.CorruptFragment as e:
        verdict.problem = str(e)
    except (ValueError, KeyError, TypeError) as e:   # a trailer that parses but is not a manifest
        verdict.problem = f"malformed manifest: {e!r}"
    return verdict


async def _check_records(read, geo: layout.Geometry, accept: frozenset[int]) -> None:
    """Records a few MiB at a time, off the event loop; a chunk of a small archive (up to
    1 MiB, what a repair reads whole) on it: the thread hop cost more than the checksums
    (keyed BLAKE3: ~35 us for 256 KiB, ~140 us for 1 MiB; a hop and the GIL handover after
    it ~0.2 ms under load, py-spy --gil of `pocket repair`), and a repair of a lost disk
    checks thousands of small archives whole (its most frequent hop)."""
    per_chunk = max(1, CHUNK_BYTES // (layout.RECORD_OVERHEAD + geo.block_size))
    loop = asyncio.get_running_loop()
    for first in range(0, geo.segments, per_chunk):
        last = min(first + per_chunk, geo.segments) - 1
        offset, length = geo.span(first, last)
        raw = await read(offset, length)
        if length <= _INLINE_CHECK_BYTES:
            _check_chunk(raw, first, last, geo, accept)
        else:
            await loop.run_in_executor(None, _check_chunk, raw, first, last, geo, accept)


def _check_chunk(raw: bytes, first: int, last: int, geo: layout.Geometry, accept: frozenset[int]) -> None:
    """Each record checked as a view of `raw`: slicing bytes copied every record once more
    (a parity archive's whole payload, in `pocket migrate verify --deep`)."""
    view = memoryview(raw)
    pos = 0
    for j in range(first, last + 1):
        n = geo.record_length(j)
        try:
            layout.unpack_record(view[pos:pos + n], accept)
        except layout.CorruptFragment as e:
            raise layout.CorruptFragment(f"segment {j}: {e}") from None
        pos += n
