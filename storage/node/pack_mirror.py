"""Another process's packs, read here: where each packed archive lives, learnt by following
the pack files as their owner appends to them.

Why: packs have one writer, the process that owns the disk, but any reader on the same
host (same_host.py) may read a record's bytes from the pack file itself once it knows
where the record is. Asking the owner for that place costs the request the read was
meant to save (a small GET is one node request, ~0.5 ms of CPU over both ends of the
link), so the reader keeps the map itself, as the owner does (a read-only PackSet filled
the way pack_open.py fills the owner's), and catches up with the packs' tails when a
name is not in it (the owner acknowledged a write after the last catch-up).

Why a read here never returns wrong bytes: an archive's bytes never change under its
name (a rewrite by repair is byte for byte), packs are append-only, and a pack file
compacted away stays readable through the descriptor held here until the next catch-up
notices and closes it. What can be stale is a place: a tail cut back after a failed
write and written again, or a pack sequence reused after a restart. So every read takes
the record's header with its bytes and checks it, keyed with the pack's salt, names
that archive with that length; one that does not is not used (the caller catches up
and asks again, or asks the owner). The archive's own records are then checked against
their keyed checksums by the caller, as for any read.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from .files import read_cached
from .pack_open import Pack
from .packformat import (ARCHIVE, PACK_HEADER_SIZE, RECORD_HEADER_SIZE, CorruptPack, pack_files,
                         parse_pack_header, parse_record_header, scan_pack, seq_of)
from .packs import PackSet

log = logging.getLogger("pocket.packs")


class PackMirror:
    def __init__(self, folder: str):
        self.packs = PackSet(folder)
        self.packs.readonly = True            # never appended to from here
        self.caught_up_at = 0.0
        self._inodes: dict[int, int] = {}     # pack sequence -> inode of the file its descriptor is
        self._scanning = threading.Lock()
        self._suspect: set[int] = set()       # packs where a place held another record: read again
        self._running: asyncio.Future | None = None
        self._started = 0.0
        self._dir_mtime: int | None = None    # of the packs folder at the last catch-up (None: not trusted)
        self._head: Pack | None = None         # the newest pack then, the one appends go to

    def knows(self, name: str) -> bool:
        return name in self.packs.archives

    def fresh(self) -> bool:
        """Whether the owner appended nothing since the last catch-up: the newest pack has
        the size scanned and no pack file came or went (the folder's mtime). Two stats per
        read, so a read never returns an archive's older copy (a corrupt one that repair
        rewrote, one since deleted) after the owner acknowledged the change."""
        head, mtime = self._head, self._dir_mtime
        if mtime is None or (head is not None and head.retired):
            return False
        try:
            return os.stat(self.packs.folder).st_mtime_ns == mtime and (
                head is None or os.fstat(head.fd).st_size == head.size)
        except OSError:
            return False

    # reads -------------------------------------------------------------------------------
    def read(self, name: str, offset: int, length: int, cached_only: bool = False) -> bytes | None:
        """Bytes of a packed archive (clamped like a file read), or None when the map has no
        place for it whose record header names it; `cached_only`: BlockingIOError rather
        than wait for the disk (files.read_cached)."""
        ps = self.packs
        with ps._lock:
            loc = ps.archives.get(name)
            pack = ps.packs.get(loc[0]) if loc else None
            if pack is None:
                return None
            pack.refs += 1
        try:
            offset = max(0, min(offset, loc[2]))
            want = RECORD_HEADER_SIZE + offset + max(0, min(length, loc[2] - offset))
            raw = read_cached(pack.fd, want, loc[1]) if cached_only else os.pread(pack.fd, want, loc[1])
        finally:
            ps._release(pack)
        rec = parse_record_header(raw[:RECORD_HEADER_SIZE], pack.salt, pack.fmt)
        if len(raw) != want or rec is None or rec[:3] != (ARCHIVE, name, loc[2]):
            self._suspect.add(pack.seq)
            return None
        return raw[RECORD_HEADER_SIZE + offset:]

    async def aread(self, name: str, offset: int, length: int) -> bytes | None:
        """`read` on the loop when the page cache holds the bytes, else in a thread."""
        try:
            return self.read(name, offset, length, cached_only=True)
        except BlockingIOError:
            return await asyncio.get_running_loop().run_in_executor(None, self.read, name, offset, length)

    # following the owner -----------------------------------------------------------------
    async def catch_up(self) -> None:
        """Read what the owner appended since the last catch-up, one catch-up at a time; one
        that began before this call may have missed what the caller looks for, so then one
        more runs."""
        asked = time.monotonic()
        while True:
            if self._running is None or self._running.done():
                self._started = time.monotonic()
                self._running = asyncio.get_running_loop().run_in_executor(None, self.catch_up_now)
            started = self._started
            await asyncio.shield(self._running)
            if started >= asked:
                return

    def catch_up_now(self) -> None:
        with self._scanning:
            ps, found = self.packs, []
            try:
                mtime = os.stat(ps.folder).st_mtime_ns
            except FileNotFoundError:
                mtime = None
            for fname in pack_files(ps.folder):
                path = os.path.join(ps.folder, fname)
                try:
                    st = os.stat(path)
                except FileNotFoundError:      # compacted away meanwhile
                    continue
                pack = ps.packs.get(seq_of(fname))
                if pack is not None and self._inodes.get(pack.seq) != st.st_ino:   # a new file, same number
                    self._retire(pack)
                    pack = None
                if pack is None and (pack := self._open(path)) is None:
                    continue
                found.append((pack, st.st_size))
            for pack in [p for p in list(ps.packs.values()) if all(p is not q for q, _ in found)]:
                self._retire(pack)      # compacted away: its live records were copied to a newer pack
            if self._suspect or any(size < pack.size for pack, size in found):
                # A pack cut back and written again (a torn tail cut at a restart): read every
                # pack anew, in order, since the newest record of a name wins.
                self._suspect.clear()
                with ps._lock:
                    for where in (ps.archives, ps.records, ps.tombs, ps.shadowed):
                        where.clear()
                    for pack, _ in found:
                        pack.size = PACK_HEADER_SIZE
            for pack, size in found:
                if size > pack.size:
                    self._follow(pack)
            self._head = found[-1][0] if found else None
            # an mtime this recent may not change for a pack made in the same clock tick
            recent = mtime is not None and time.time_ns() - mtime < 50_000_000
            self._dir_mtime = None if recent else mtime
            self.caught_up_at = time.monotonic()

    def _open(self, path: str) -> Pack | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            seq, salt, fmt = parse_pack_header(os.pread(fd, PACK_HEADER_SIZE, 0))
        except CorruptPack as e:
            os.close(fd)
            log.debug("pack %s not followed: %s", path, e)   # the owner's scrubber reports it
            return None
        pack = Pack(seq, path, salt, fd, PACK_HEADER_SIZE, fmt=fmt)
        self._inodes[seq] = os.fstat(fd).st_ino
        with self.packs._lock:
            self.packs.packs[seq] = pack
        return pack

    def _follow(self, pack: Pack) -> None:
        try:
            scan = scan_pack(pack.path, start=pack.size)
        except (CorruptPack, FileNotFoundError):
            return
        if (scan.seq, scan.salt) != (pack.seq, pack.salt):   # replaced between the stat and the scan
            return
        ps = self.packs
        with ps._lock:
            for e in scan.entries:
                ps._apply(e.kind, e.name, (pack.seq, e.offset, e.length))
            pack.size = max(pack.size, scan.end)

    def _forget(self, seq: int) -> None:
        """Drop every place in pack `seq` from the map."""
        ps = self.packs
        with ps._lock:
            for where in (ps.archives, ps.records, ps.tombs):
                for name in [n for n, loc in where.items() if loc[0] == seq]:
                    del where[name]

    def _retire(self, pack: Pack) -> None:
        self._forget(pack.seq)
        self._inodes.pop(pack.seq, None)
        ps = self.packs
        with ps._lock:
            ps.packs.pop(pack.seq, None)
            pack.retired = True
            close = pack.refs == 0
        if close:
            os.close(pack.fd)

    def close(self) -> None:
        self.packs.close()
