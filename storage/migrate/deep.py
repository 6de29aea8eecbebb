"""`pocket migrate verify --deep` for one version: the source's bytes and Pocket's, read at
once and compared byte for byte, and every fragment archive of the version checked, each
byte of it read and hashed once.

Pocket's side is read through its own read path (the archive reader of objects/get.py,
via deep_blocks.py; objects/reads.py for an encrypted version), which checks every
record of the data fragments it reads against its checksum and reports what fails. So a
data archive gets only the checks that read does not make (header, footer, manifest,
where the records end: `verify_archive(records=False)`), and the parity archives, which
a read leaves alone, are checked whole. Checking the data archives whole as well read
and hashed all of them twice (bench/RESULTS.md, Session 11, second round). A data
fragment whose disk is not up is checked whole: the read goes around it. Damage found
either way goes to the repair queue and makes the version "damaged". Archives on this
machine's disks are checked in a mapping of each part's archives (deep_blocks.mapped),
not read.

Comparing the bytes themselves, not a SHA-256 of each side, is stronger and cheaper:
memcmp is ~0.04 ms per MiB, each SHA-256 ~0.7 ms. Pocket's side comes as the read's
checked blocks, not joined into segments (deep_blocks.py), and each is compared where it
lies in the source's chunk, `chunk.startswith(block, offset)`: a memcmp over both
buffers, where slicing the chunk copies it and a view compared with a view goes byte by
byte (~50x slower).
"""
from __future__ import annotations

import asyncio
import logging

from .. import layout
from ..index import parts as P
from ..objects.get import Unreadable
from ..throttle import Throttle
from ..verify import ArchiveBytes, verify_archive
from . import deep_blocks

log = logging.getLogger("pocket.migrate.verify")


async def read_both(tc, objects, record: dict, theirs) -> dict | None:
    """Compare the source's stream `theirs` with Pocket's copy `record`; the problem, or None."""
    damage: list = []
    mine = deep_blocks.views(tc.cluster, record, damage.extend) if deep_blocks.readable(record) else \
        objects.read(record, 0, record["size"] - 1, damage.extend)
    checked = asyncio.ensure_future(_check_archives(tc, record))
    try:
        same = await same_bytes(theirs, mine)
    except Unreadable as err:
        same = err
    finally:
        await theirs.aclose()
        await mine.aclose()          # the read reports its damage as it closes
        bad = await checked
    for d in damage:
        bad.setdefault(d.version_id, (d.record, {}))[1].setdefault(d.index, (d.kind, f"{d.reason} (found by "
                                                                                    "migrate verify)"))
    for piece, found in bad.values():
        await tc.queue.add(piece, found, "verify")
    if isinstance(same, Unreadable):
        return {"problem": "unreadable", "why": f"Pocket cannot read it: {same}"}
    if not same:
        return {"problem": "different", "why": "the bytes differ"}
    count = sum(len(found) for _, found in bad.values())
    if count:
        return {"problem": "damaged", "why": f"{count} fragment(s) corrupt or missing in Pocket (the read went "
                                             "around them); queued for repair"}
    return None


async def _check_archives(tc, record: dict) -> dict[str, tuple[dict, dict]]:
    """Every fragment archive of the version, parity included, checked as the scrubber
    does (a data fragment's records left to the read): {piece version id: (piece, bad)}."""
    out = {}
    for piece in deep_blocks.pieces(record):
        volume = tc.cluster.volumes.get(piece["volume"])
        if volume is None or not piece.get("size"):
            continue
        async with deep_blocks.mapped(tc.cluster, piece, range(len(volume["disks"]))) as maps:
            bad = await _check_piece(tc, piece, volume, maps)
        if bad:
            out[piece["version_id"]] = (piece, bad)
    return out


async def _check_piece(tc, piece: dict, volume: dict, mapped: dict) -> dict[int, tuple[str, str]]:
    bad = {}
    for i, disk_id in enumerate(volume["disks"]):
        name = layout.archive_name(piece["version_id"], i)
        disk = ArchiveBytes(mapped[i]) if i in mapped else tc.cluster.disks[disk_id]
        whole = i >= piece["k"] or not tc.cluster.is_up(disk_id)
        try:
            size = len(mapped[i]) if i in mapped else await disk.stat(name)
            verdict = None if size is None else await verify_archive(disk, name, size, Throttle(0), whole)
        except FileNotFoundError:
            size = None
        except Exception as e:      # a disk that does not answer is the heartbeat's business
            log.warning("verify: could not check %s on %s: %r", name, disk_id, e)
            continue
        if size is None:
            bad[i] = ("missing", "not on its disk (found by migrate verify)")
        elif verdict.problem:
            bad[i] = ("corrupt", f"{verdict.problem} (found by migrate verify)")
    return bad


async def once(data: bytes):
    yield data


async def same_bytes(a, b) -> bool:
    """Whether two streams of bytes are the same bytes, however each is cut. Each piece of
    `b` is compared where it lies in `a`'s chunk, without copying either (`startswith`
    with an offset is a memcmp); `a`'s chunks are bytes (the source's), `b`'s any buffer."""
    x: bytes | None = b""
    at = 0                      # where the rest of `x` begins
    while True:
        if at == len(x):
            x, at = await _chunk(a), 0
        y = await _next(b)
        if x is None or y is None:
            return x is None and y is None
        y = memoryview(y)
        while len(y):
            n = min(len(x) - at, len(y))
            if not x.startswith(y[:n] if n < len(y) else y, at):
                return False
            at, y = at + n, y[n:]
            if len(y) and at == len(x):
                x, at = await _chunk(a), 0
                if x is None:
                    return False
        del y       # before `b` goes on: the end of a mapped archive is unmapped in a thread (deep_blocks)


async def _chunk(chunks):
    """The next chunk of the source's side, as something with `startswith`; None at the end."""
    got = await _next(chunks)
    return got if got is None or hasattr(got, "startswith") else bytes(got)


async def _next(chunks):
    """The next chunk that is not empty; None at the end."""
    while (got := await anext(chunks, None)) is not None and not len(got):
        pass
    return got
