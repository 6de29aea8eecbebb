"""Pack compaction: reclaiming the space deletes and overwrites leave in a disk's packs.

Compaction copies the live records of a mostly-dead pack into the newest pack (through
the pack writer, so each copy is fsync'd like any append), and only then unlinks the old
pack; a mostly-dead newest pack is first closed for appends so it can be compacted
like the others. A delete record is copied while an older pack still holds a superseded copy of the
archive it deletes, so a delete outlives what it hides. A copy only lands if the name
still lives where it was read from (`_Item.expect`): a write or delete that came in
meanwhile wins. The schedule (which disks, how often) is compactor.py's.
"""
from __future__ import annotations

import asyncio
import logging
import os

from .packformat import ARCHIVE, DELETE, LEGACY_PACK_VERSION, RECORD, RECORD_HEADER_SIZE, payload_sum, scan_pack
from .files import fsync_path
from .pack_open import Pack
from .packs import PackSet, _Item

log = logging.getLogger("pocket.packs")


async def compact(ps: PackSet, min_live: float = 0.5) -> dict:
    """Rewrite every older pack less than `min_live` live into the newest one, then drop it."""
    out = {"packs": 0, "copied": 0, "removed": 0}  # packs removed, bytes copied, bytes removed
    if not ps._compacting.acquire(blocking=False):
        return out
    try:
        with ps._lock:
            head = ps.head
            if head is not None and head.live < min_live * head.data_bytes:
                # Roll a mostly dead head: the next append starts a new pack, so this one can
                # be compacted too. Without this a disk whose data fits in one pack never
                # gets the space of its deletes back.
                ps.head = None
            # A pack from before keyed sums is rewritten whatever its live share: that
            # upgrades the disk's packs in place, a pack at a time, resuming after a restart.
            victims = [p for p in ps.packs.values()
                       if p is not ps.head and (p.live == 0 or p.live < min_live * p.data_bytes
                                                or p.fmt == LEGACY_PACK_VERSION)]
        for pack in sorted(victims, key=lambda p: p.seq):
            copied = await _compact_one(ps, pack)
            if copied is not None:
                out["packs"] += 1
                out["copied"] += copied
                out["removed"] += pack.size
    finally:
        ps._compacting.release()
    return out


async def _compact_one(ps: PackSet, pack: Pack) -> int | None:
    loop = asyncio.get_running_loop()
    with ps._lock:
        pack.refs += 1
    try:
        keep, stale = await loop.run_in_executor(None, _plan, ps, pack)
        copied = 0
        for i in range(0, len(keep), 256):
            group = keep[i:i + 256]
            items = await loop.run_in_executor(None, _copies, ps, pack, group)
            await asyncio.gather(*(ps._submit(item) for item in items))
            copied += sum(len(item.payload) for item in items if item.result)
    finally:
        ps._release(pack)
    with ps._lock:
        for kind, name, loc, _ in keep:
            if kind == DELETE and ps.tombs.get(name) == loc:  # not needed any more
                del ps.tombs[name]
                ps._unlive(loc)
        if pack.live != 0:
            log.warning("pack %s still has %d live bytes after compaction; kept", pack.path, pack.live)
            return None
        for name in stale:
            packs = ps.shadowed.get(name)
            if packs is not None:
                packs.discard(pack.seq)
                if not packs:
                    del ps.shadowed[name]
        del ps.packs[pack.seq]
        pack.retired = True
        close = pack.refs == 0
    await loop.run_in_executor(None, _unlink_pack, pack.path, pack.fd if close else None)
    log.info("compacted pack %s: %d bytes live copied, %d bytes reclaimed", pack.path, copied, pack.size)
    return copied


def _plan(ps: PackSet, pack: Pack) -> tuple[list, set[str]]:
    """What must survive the pack: current records, and deletes still hiding something."""
    scan = scan_pack(pack.path)
    keep, stale = [], set()
    with ps._lock:
        for e in scan.entries:
            loc = (pack.seq, e.offset, e.length)
            if e.kind == ARCHIVE and ps.archives.get(e.name) != loc:
                stale.add(e.name)
            elif e.kind == RECORD and ps.records.get(e.name) != loc:
                continue
            elif e.kind == DELETE:
                if ps.tombs.get(e.name) != loc:
                    continue
                needed = ps.shadowed.get(e.name, set()) - {pack.seq}
                keep.append((DELETE, e.name, loc, e.psum if needed else None))
            else:
                keep.append((e.kind, e.name, loc, e.psum))
    return keep, stale


def _copies(ps: PackSet, pack: Pack, group: list) -> list[_Item]:
    items = []
    for kind, name, loc, psum in group:
        if psum is None:
            continue  # a delete nothing older needs any more
        payload = os.pread(pack.fd, loc[2], loc[1] + RECORD_HEADER_SIZE) if loc[2] else b""
        fresh = payload_sum(payload)   # the sum of the pack it goes to (an old pack's may be unkeyed)
        if payload_sum(payload, pack.fmt) != psum:
            log.error("pack %s: %s %s is corrupt; copied as is for the scrubber to find",
                      pack.path, "archive" if kind == ARCHIVE else "record", name)
            fresh ^= 1     # still corrupt where it goes
        items.append(_Item(kind, name, payload, fresh, None, expect=loc))
    return items


def _unlink_pack(path: str, fd: int | None) -> None:
    os.unlink(path)
    fsync_path(os.path.dirname(path))
    if fd is not None:
        os.close(fd)
