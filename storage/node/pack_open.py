"""Opening a disk's packs: scanning them into the map, and cutting a torn tail.

Only the newest pack is ever appended to, so only it can end in a torn batch; its
trailing records' payloads are verified and a torn tail is truncated (it was never
acknowledged). Older packs are scanned header by header, seeking over payloads; a
damaged region is logged and its records count as missing on this disk (repair
rewrites them). `load` fills a PackSet's maps (packs.py) the way its writer will
keep them.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .packformat import PACK_HEADER_SIZE, PACK_VERSION, SUFFIX, CorruptPack, pack_files, scan_pack, seq_of

if TYPE_CHECKING:
    from .packs import PackSet

log = logging.getLogger("pocket.packs")


@dataclass(eq=False)
class Pack:
    seq: int
    path: str
    salt: int
    fd: int
    size: int            # bytes of valid data (header included)
    live: int = 0        # bytes of records that are still current
    refs: int = 0        # reads and compactions using fd right now
    retired: bool = False
    fmt: int = PACK_VERSION   # packformat: version 1 packs (unkeyed sums) are read, never appended to

    @property
    def data_bytes(self) -> int:
        return self.size - PACK_HEADER_SIZE


@dataclass
class OpenReport:
    packs: int = 0
    records: int = 0
    damaged_regions: int = 0
    damaged_bytes: int = 0
    truncated_bytes: int = 0
    bad_packs: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load(ps: PackSet, readonly: bool = False) -> OpenReport:
    """Scan the packs into the map. `readonly`: another process owns them (it may be
    appending right now), so nothing is truncated or removed and no pack takes appends."""
    started, rep = time.monotonic(), OpenReport()
    ps.readonly = readonly
    if not readonly:
        os.makedirs(ps.folder, exist_ok=True)
        for stale in os.listdir(ps.folder):
            if stale.endswith(SUFFIX + ".tmp"):
                os.unlink(os.path.join(ps.folder, stale))
    elif not os.path.isdir(ps.folder):
        return rep
    names = pack_files(ps.folder)
    for i, fname in enumerate(names):
        path = os.path.join(ps.folder, fname)
        newest = i == len(names) - 1
        try:
            scan = scan_pack(path, verify_tail=newest)
        except CorruptPack as e:
            log.error("pack %s is unreadable (%s); its archives are missing on this disk until "
                      "repair rewrites them", path, e)
            rep.bad_packs.append(path)
            ps._next_seq = max(ps._next_seq, seq_of(fname) + 1)
            continue
        if scan.end < scan.size and newest and not readonly:
            log.warning("pack %s: truncating %d bytes of torn tail (never acknowledged)",
                        path, scan.size - scan.end)
            rep.truncated_bytes += scan.size - scan.end
            with open(path, "r+b") as f:
                f.truncate(scan.end)
                os.fsync(f.fileno())
        elif scan.end < scan.size:
            scan.damaged.append((scan.end, scan.size))
        for lo, hi in scan.damaged:
            log.error("pack %s: bytes %d-%d are damaged (bad record header); records there are "
                      "missing on this disk", path, lo, hi)
        rep.damaged_regions += len(scan.damaged)
        rep.damaged_bytes += sum(hi - lo for lo, hi in scan.damaged)
        writable = newest and not readonly and scan.fmt == PACK_VERSION
        pack = Pack(scan.seq, path, scan.salt,
                    os.open(path, os.O_RDWR if writable else os.O_RDONLY), scan.end, fmt=scan.fmt)
        ps.packs[scan.seq] = pack
        ps._next_seq = max(ps._next_seq, scan.seq + 1)
        for e in scan.entries:
            ps._apply(e.kind, e.name, (scan.seq, e.offset, e.length))
        rep.records += len(scan.entries)
        if writable and scan.end < ps.pack_size:
            ps.head = pack
    rep.packs = len(ps.packs)
    rep.seconds = time.monotonic() - started
    ps.report = rep
    return rep
