"""Rebuilding a set of small archives (read whole) in a few steps, without the streaming path.

Most archives a lost disk held are small: every replicated object, and the fragments of
erasure-coded objects up to a few MiB. Streamed through the GET path's reader and the
PUT path's writer, each cost a reader, a writer with a task and a queue per archive, an
item per record and a trailer round, and those Python steps per archive, not bytes, were
two thirds of a repair's CPU for a quarter of its bytes (bench.repair, session 9).

Here a small set is: its first k usable source archives read whole (one fetch each,
which the disk's Coalescer sends together with the other sets' reads: fetch.py), each
checked once and whole (verify_archive: header, trailer, every record), the lost blocks
of every segment computed from views into them, and each rebuilt archive laid out once
in memory and handed to its disk in one piece, so a small one goes in the disk's next
batch (batch.py) with the other sets' and shares one request and one fsync on the node.
The bytes are those the streaming path writes: the same header, records (Codec.rebuild,
pack_records) and trailer.

A source that is missing or fails a check is reported to the queue and the next one
read; a set that has fewer than k whole good archives (damage in different segments of
several of them) is left to the streaming path, which mixes fragments segment by segment.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .. import layout
from ..codec import Codec
from ..node.fetch import WHOLE
from ..objects.contracts import VersionRecord
from ..objects.get import payload_views
from ..objects.put import Record, is_full, pack_records
from ..throttle import Throttle
from ..verify import ArchiveBytes, verify_archive

if TYPE_CHECKING:
    from ..cluster import Cluster
    from .queue import RepairQueue

log = logging.getLogger("pocket.repair")


class TooFewWhole(Exception):
    """Fewer than k source archives are whole: the streaming path reads segment by segment."""


async def rebuild_small(cluster: Cluster, queue: RepairQueue, record: VersionRecord, volume: dict,
                        build: set[int], avoid: set[int], throttle: Throttle) -> dict[int, int]:
    """Write archives `build` of a small set; {index: bytes written} of those committed."""
    codec = Codec(record["k"], record["m"])
    manifest, views = await _sources(cluster, queue, record, volume, avoid, codec.k)
    geo = layout.geometry(manifest, codec.k)
    wanted = frozenset(i for i in build if _writable(cluster, volume["disks"][i]))
    segments = [rebuilt_records(codec, {i: v[j] for i, v in views.items()}, wanted) for j in range(geo.segments)]
    segment_size = layout.stored_segment_size(manifest)
    trailer = layout.pack_trailer(manifest)
    archives = {i: _archive(manifest["version_id"], codec, segment_size, i, [s[i] for s in segments], trailer)
                for i in wanted}
    await throttle.take(sum(sum(map(len, parts)) for parts in archives.values()))
    done = await asyncio.gather(*(_put(cluster, volume["disks"][i], layout.archive_name(manifest["version_id"], i),
                                       parts) for i, parts in archives.items()))
    return {i: size for i, size in zip(archives, done) if size is not None}


def rebuilt_records(codec: Codec, blocks: dict, wanted: frozenset[int]) -> list[Record | None]:
    """The records of fragments `wanted` of one segment, rebuilt from k of its blocks:
    only the lost blocks are computed and only they get a keyed checksum."""
    rebuilt = codec.rebuild(blocks, wanted)
    return pack_records([rebuilt.get(i, b"") for i in range(codec.n)], wanted)


def _archive(version_id: str, codec: Codec, segment_size: int, index: int, records: list[Record],
             trailer: bytes) -> list:
    """The archive's bytes as pieces (header, record heads and payloads, trailer), as the
    streaming writer (put.ArchiveWriter) sends them."""
    header = layout.ArchiveHeader(index=index, version_id=version_id, k=codec.k, m=codec.m,
                                  segment_size=segment_size,
                                  block_size=layout.Geometry(0, segment_size, codec.k).block_size).pack()
    parts: list = [header]
    for head, payload in records:
        parts += [head, payload]
    parts.append(trailer)
    return parts


def _writable(cluster: Cluster, disk_id: str) -> bool:
    return cluster.is_up(disk_id) and cluster.has_room(disk_id)


async def _put(cluster: Cluster, disk_id: str, name: str, parts: list) -> int | None:
    """The archive written and fsync'd by its disk (its size), or None: the disk is then
    marked down or full, as a failed write of the streaming path marks it."""
    async def chunks():
        for p in parts:
            yield p
    try:
        await cluster.disks[disk_id].put_archive(name, chunks())
        return sum(map(len, parts))
    except asyncio.CancelledError:
        raise
    except Exception as e:
        error = repr(e)
        log.warning("rebuilt archive %s not written to disk %s: %s", name, disk_id, error)
        if is_full(error):
            cluster.mark_full(disk_id)
        else:
            cluster.mark_down(disk_id, f"write failed: {error}")
        return None


async def _sources(cluster: Cluster, queue: RepairQueue, record: VersionRecord, volume: dict,
                   avoid: set[int], k: int) -> tuple[dict, dict[int, list]]:
    """The manifest and the checked payload views of k whole source archives. Data
    fragments on disks that are up first (a replica, or k data blocks: no decoding); the
    fragments being rebuilt (`avoid`) only as a last resort."""
    vid = record["version_id"]
    disks = volume["disks"]
    order = sorted(range(len(disks)), key=lambda i: (i in avoid, not cluster.is_up(disks[i]), i >= k, i))
    good: dict[int, tuple[dict, bytes]] = {}
    damage: dict[int, tuple[str, str]] = {}
    while len(good) < k:
        batch, order = order[:k - len(good)], order[k - len(good):]
        if not batch:
            if damage:
                _report(queue, record, {i: d for i, d in damage.items() if i not in avoid})
            raise TooFewWhole(f"version {vid}: {len(good)} of {k} source archives whole ({damage})")
        for i, found in zip(batch, await asyncio.gather(*(_source(cluster, disks[i], vid, i, record)
                                                           for i in batch))):
            if isinstance(found[0], dict):
                good[i] = found
            else:
                damage[i] = found
    _report(queue, record, {i: d for i, d in damage.items() if i not in avoid})
    manifest = next(iter(good.values()))[0]
    geo = layout.geometry(manifest, k)
    end = geo.records_end()
    return manifest, {i: payload_views(memoryview(raw)[layout.HEADER_SIZE:end], 0, geo.segments - 1, geo)
                      for i, (_, raw) in good.items()}


async def _source(cluster: Cluster, disk_id: str, vid: str, i: int, record: VersionRecord):
    """(manifest, raw) of archive `i` read whole and checked, or (kind, reason) of what is
    wrong with it (strings: kind as get.Damage's)."""
    name = layout.archive_name(vid, i)
    try:
        raw = await cluster.disks[disk_id].read(name, 0, WHOLE)
    except FileNotFoundError:
        return "missing", "missing"
    except layout.CorruptFragment as e:   # a packed archive whose pack record failed its check
        return "corrupt", str(e)
    except Exception as e:
        reason = f"unreadable: {e!r}"
        cluster.mark_down(disk_id, reason)
        return "missing", reason
    verdict = await verify_archive(ArchiveBytes(raw), name, len(raw), Throttle(0))
    manifest = verdict.manifest
    if verdict.problem is not None:
        return "corrupt", verdict.problem
    if manifest.get("version_id") != vid or not layout.accepted(manifest) <= layout.accepted(record):
        return "corrupt", "its manifest is not the indexed version's (an unkeyed archive of a keyed object?)"
    return manifest, raw


def _report(queue: RepairQueue, record: VersionRecord, bad: dict[int, tuple[str, str]]) -> None:
    """Damage met on the way: queued for the next round, as the streaming reader's is."""
    if bad:
        for i, (kind, reason) in bad.items():
            log.warning("fragment %d of %s/%s (version %s): %s; reading another", i, record["bucket"],
                        record["key"], record["version_id"], reason)
        queue.add_later(record, bad, "repair")
