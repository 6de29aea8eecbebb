"""Pack files: small archives and records appended to a few large files per disk.

Why: a file per archive costs a create, a write, an fsync, a rename and a directory
fsync (~0.37 ms on our machines), so small PUTs top out at a few hundred a second. Like
Haystack, f4 and Magic Pocket, small blobs are instead appended to large append-only
files (format: packformat.py), and one writer thread per disk covers every append that
arrived while the previous fsync ran with one write and one fsync. Nothing is
acknowledged before the fsync that covers it, but deletes asked not to wait for one
(`delete(durable=False)`), which the next synced batch covers.

Only the newest pack is ever appended to, so only it can end in a torn batch, which
opening the packs cuts off (pack_open.py).

Compaction (pack_compaction.py) copies the live records of mostly-dead packs through
the writer here and then removes them; `shadowed`, `tombs` and `live` are kept for it.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import secrets
import threading
from dataclasses import dataclass

from ..handback import hand_back
from . import pack_open
from .files import fsync_path, is_enospc, pwrite_all, read_cached, truncate_quietly, unlink_quietly
from .pack_open import OpenReport, Pack
from .packformat import (ARCHIVE, DELETE, PACK_HEADER_SIZE, RECORD, RECORD_HEADER_SIZE, SUFFIX, pack_header,
                         parse_record_header, payload_sum, record_header)

log = logging.getLogger("pocket.packs")

_MAX_BATCH = 8 << 20
_LAZY_SYNC_SECONDS = 0.05   # how long deletes written without an fsync wait for a batch to cover them


@dataclass(eq=False)
class _Item:
    kind: int
    name: str
    payload: bytes
    psum: int
    fut: asyncio.Future | None
    expect: tuple | None = None   # a relocation: only if the name still lives there
    result: object = None
    durable: bool = True          # False: acknowledged once written, synced with a later batch

    @property
    def size(self) -> int:
        return RECORD_HEADER_SIZE + len(self.payload)


class PackSet:
    """The packs of one disk: where every packed name lives, and the one writer.

    Locations are (pack sequence, record offset, payload length). Reads and writes may
    come from any thread; `_lock` guards the maps and the packs, `_cond` the queue."""

    def __init__(self, folder: str, pack_size: int = 64 << 20, idle_seconds: float = 5.0):
        self.folder = folder
        self.pack_size = pack_size
        self.idle_seconds = idle_seconds
        self.archives: dict[str, tuple] = {}
        self.records: dict[str, tuple] = {}
        self.tombs: dict[str, tuple] = {}       # deleted archives whose delete record is current
        self.shadowed: dict[str, set[int]] = {}  # name -> packs that hold superseded archives of it
        self.packs: dict[int, Pack] = {}
        self.head: Pack | None = None
        self.syncs = self.batches = self.appends = 0
        self.report = OpenReport()
        self._next_seq = 1
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Item] = collections.deque()
        self._staged: list[_Item] = []                 # submitted this loop iteration (under _cond)
        self._handing_over: set = set()                # loops with a _hand_over scheduled (under _cond)
        self._inflight: collections.Counter = collections.Counter()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._compacting = threading.Lock()
        self._unsynced: Pack | None = None             # written to without an fsync since (writer only)
        self.readonly = False

    # open --------------------------------------------------------------------------------
    def load(self, readonly: bool = False) -> OpenReport:
        """Scan the packs into the map (pack_open.py). `readonly`: another process owns them."""
        return pack_open.load(self, readonly)

    # reads -------------------------------------------------------------------------------
    def archive_size(self, name: str) -> int | None:
        loc = self.archives.get(name)
        return None if loc is None else loc[2]

    def location(self, name: str) -> tuple[str, int, int] | None:
        """(pack path, payload offset, length) of a packed archive."""
        with self._lock:
            loc = self.archives.get(name)
            return None if loc is None else (self.packs[loc[0]].path, loc[1] + RECORD_HEADER_SIZE, loc[2])

    def read_archive(self, name: str, offset: int, length: int, cached_only: bool = False) -> bytes | None:
        """Bytes of a packed archive (clamped like a file read), or None if it is not packed;
        `cached_only`: BlockingIOError rather than wait for the disk (files.read_cached)."""
        return self._read(self.archives, name, offset, length, cached_only)

    def read_record(self, rec_id: str) -> bytes | None:
        """A packed record's payload, checked against its checksum (None: absent or corrupt)."""
        found = self.read_checked(rec_id, record=True)
        if found is None:
            return None
        payload, intact = found
        if not intact:
            log.error("record %s in pack %s is corrupt; skipped", rec_id, self.folder)
            return None
        return payload

    def read_checked(self, name: str, record: bool = False) -> tuple[bytes, bool] | None:
        """(payload, whether its record header and checksum hold) of a packed archive or
        record, or None if it is not packed. What the scrubber checks a pack record with."""
        with self._lock:
            loc = (self.records if record else self.archives).get(name)
            pack = self.packs.get(loc[0]) if loc else None
            if pack is None:
                return None
            pack.refs += 1
        try:
            raw = os.pread(pack.fd, RECORD_HEADER_SIZE + loc[2], loc[1])
        finally:
            self._release(pack)
        rec = parse_record_header(raw, pack.salt, pack.fmt)
        payload = raw[RECORD_HEADER_SIZE:]
        return payload, rec is not None and len(payload) == loc[2] and payload_sum(payload, pack.fmt) == rec[3]

    def stamp(self, name: str) -> tuple | None:
        """Where a packed archive lives: changes whenever it is rewritten or deleted."""
        loc = self.archives.get(name)
        return None if loc is None else ("pack", *loc)

    def _read(self, where: dict, name: str, offset: int, length: int, cached_only: bool = False) -> bytes | None:
        with self._lock:
            loc = where.get(name)
            pack = self.packs.get(loc[0]) if loc else None
            if pack is None:
                return None
            pack.refs += 1
        try:
            length, at = max(0, min(length, loc[2] - offset)), loc[1] + RECORD_HEADER_SIZE + offset
            if not length:
                return b""
            return read_cached(pack.fd, length, at) if cached_only else os.pread(pack.fd, length, at)
        finally:
            self._release(pack)

    def _release(self, pack: Pack) -> None:
        with self._lock:
            pack.refs -= 1
            close = pack.retired and pack.refs == 0
        if close:
            os.close(pack.fd)

    def archive_list(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(name, loc[2]) for name, loc in self.archives.items()]

    def record_ids(self) -> list[str]:
        with self._lock:
            return list(self.records)

    def total_bytes(self) -> int:
        """Bytes in the pack files, dead records included (compaction gives them back)."""
        with self._lock:
            return sum(p.size for p in self.packs.values())

    def stats(self) -> dict:
        with self._lock:
            return {"packs": len(self.packs), "archives": len(self.archives), "records": len(self.records),
                    "bytes": sum(p.size for p in self.packs.values()),
                    "live_bytes": sum(p.live for p in self.packs.values()),
                    "appends": self.appends, "batches": self.batches, "syncs": self.syncs}

    # writes ------------------------------------------------------------------------------
    async def put(self, kind: int, name: str, payload: bytes) -> None:
        """Append an archive or record; returns once it is fsync'd."""
        await self._submit(_Item(kind, name, payload, payload_sum(payload), None))

    async def delete(self, name: str, durable: bool = True) -> bool:
        """Append a delete record if the archive is packed (or being packed); True if it was.

        `durable=False`: an archive of a version something durable already dropped (a
        tombstone, then the index commit; a newer version). Lost to a power cut, the delete
        brings back an orphan the scrubber removes and an index rebuild leaves out, so
        it waits for no fsync: at 16 clients deleting small objects those were half of
        the appends, each batch of them one more fsync per disk."""
        return await self._submit(_Item(DELETE, name, b"", payload_sum(b""), None, durable=durable))

    async def _submit(self, item: _Item):
        if self.readonly:
            if item.kind == DELETE and item.name not in self.archives:
                return False
            raise PacksOwnedElsewhere(
                f"the packs in {self.folder} belong to a running process; change {item.name} through it")
        loop = asyncio.get_running_loop()
        item.fut = loop.create_future()
        with self._cond:
            if self._closing:
                raise RuntimeError(f"pack store {self.folder} is closed")
            with self._lock:
                if item.expect is None and item.kind == DELETE and item.name not in self.archives \
                        and not self._inflight[item.name]:
                    return False
                if item.expect is None and item.kind == ARCHIVE:
                    self._inflight[item.name] += 1
            self._staged.append(item)
            if loop not in self._handing_over:
                self._handing_over.add(loop)
                loop.call_soon(self._hand_over, loop)
        return await item.fut

    def _hand_over(self, loop) -> None:
        """Give the writer what this loop iteration submitted, with one wake-up: waking it
        per append (a futex call and a context switch, three per replicated PUT) was 11 %
        of a small DELETE's CPU (py-spy). Appends that come together share a batch anyway."""
        with self._cond:
            self._handing_over.discard(loop)
            batch, self._staged = self._staged, []
            if batch:           # else another loop's hand-over, or close(), took them
                self._queue.extend(batch)
                self._wake_writer()

    def _wake_writer(self) -> None:
        """Start the writer or wake it for what is queued (caller holds _cond)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"pack-writer:{self.folder}", daemon=True)
            self._thread.start()
        else:
            self._cond.notify()

    def close(self) -> None:
        """Finish what is queued, stop the writer thread and close every pack."""
        with self._cond:
            self._closing = True
            self._queue.extend(self._staged)   # submitted but not handed over yet: written too
            self._staged = []
            if self._queue:
                self._wake_writer()
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join()
        with self._lock:
            for pack in self.packs.values():
                pack.retired = True
                if pack.refs == 0:
                    os.close(pack.fd)
            self.packs, self.head = {}, None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._unsynced is not None:   # deletes no batch has synced yet: one that
                        if not self._closing:         # comes soon may, else they get their own
                            self._cond.wait(_LAZY_SYNC_SECONDS)
                        if not self._queue:
                            break
                    elif self._closing or (not self._cond.wait(self.idle_seconds) and not self._queue):
                        self._thread = None
                        return
                batch, size = [], 0
                while self._queue and (not batch or size + self._queue[0].size <= _MAX_BATCH):
                    item = self._queue.popleft()
                    batch.append(item)
                    size += item.size
            if batch:
                self._commit(batch, size)
            else:
                self._sync_unsynced()

    def _commit(self, batch: list[_Item], size: int) -> None:
        """One write and one fsync for the whole batch, then the map, then the waiters."""
        head = None
        written = False
        try:
            head = self._head_for(size)
            with self._lock:
                todo = self._admit(batch)
            blobs, locs, pos = [], [], head.size
            for item in todo:
                blobs += [record_header(item.kind, item.name, len(item.payload), item.psum, head.salt),
                          item.payload]
                locs.append((head.seq, pos, len(item.payload)))
                pos += item.size
            sync = any(item.durable for item in todo)
            if todo:
                pwrite_all(head.fd, b"".join(blobs), head.size)
                written = True
                if sync:
                    os.fdatasync(head.fd)
            if sync:
                self._unsynced = None if self._unsynced is head else self._unsynced
            elif todo:
                self._unsynced = head
            with self._lock:
                self.syncs += sync
                self.batches += 1
                self.appends += len(todo)
                for item, loc in zip(todo, locs):
                    self._apply(item.kind, item.name, loc, item.expect)
                head.size = pos
                self._settle_inflight(batch)
        except BaseException as e:
            log.error("pack write to %s failed: %r", head.path if head else self.folder, e)
            with self._lock:
                self._settle_inflight(batch)
            if head is not None:
                truncate_quietly(head.fd, head.size)
                if written or not is_enospc(e):
                    self.head = None  # start a fresh pack; what fsync failed on is not trusted
                # A full disk refused the write itself: the pack is as it was, and a new pack
                # per refused batch would only litter the full disk with empty packs.
            _resolve(batch, e)
        else:
            _resolve(batch, None)

    def _sync_unsynced(self) -> None:
        """The fsync that deletes written without one still wait for (writer thread)."""
        pack, self._unsynced = self._unsynced, None
        try:
            os.fdatasync(pack.fd)
            with self._lock:
                self.syncs += 1
        except OSError as e:   # the pack was compacted away and closed meanwhile: nothing to keep
            log.warning("syncing deletes in pack %s: %r", pack.path, e)

    def _settle_inflight(self, batch: list[_Item]) -> None:
        for item in batch:
            if item.kind == ARCHIVE and item.expect is None:
                self._inflight[item.name] -= 1
                if not self._inflight[item.name]:
                    del self._inflight[item.name]

    def _admit(self, batch: list[_Item]) -> list[_Item]:
        """Drop deletes of what is not there and relocations of what has changed since."""
        state: dict[tuple, bool] = {}
        todo = []
        for item in batch:
            key = (item.kind == RECORD, item.name)
            if item.expect is not None:
                where = {ARCHIVE: self.archives, RECORD: self.records, DELETE: self.tombs}[item.kind]
                item.result = key not in state and where.get(item.name) == item.expect
            elif item.kind == DELETE:
                item.result = state[key] if key in state else item.name in self.archives
                state[key] = False
            else:
                state[key] = True
            if item.result is not False:
                todo.append(item)
        return todo

    def _head_for(self, size: int) -> Pack:
        head = self.head
        if head is not None and (head.size + size <= self.pack_size or head.size == PACK_HEADER_SIZE):
            return head
        if self._unsynced is not None:
            self._sync_unsynced()   # no later batch appends to the old head to cover its deletes
        seq, salt = self._next_seq, secrets.randbits(64)
        path = os.path.join(self.folder, f"{seq:08d}{SUFFIX}")
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(pack_header(seq, salt))
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
        except BaseException:
            unlink_quietly(tmp)
            raise
        fsync_path(self.folder)
        pack = Pack(seq, path, salt, os.open(path, os.O_RDWR), PACK_HEADER_SIZE)
        with self._lock:
            self.packs[seq] = pack
            self._next_seq = seq + 1
            self.head = pack
        return pack

    def _apply(self, kind: int, name: str, loc: tuple, expect: tuple | None = None) -> None:
        """The map after record `loc`, the newest of its name so far (caller holds _lock)."""
        if expect is not None:  # a compaction copy: same record, new place
            where = {ARCHIVE: self.archives, RECORD: self.records, DELETE: self.tombs}[kind]
            self._unlive(expect)
            where[name] = loc
        elif kind == RECORD:
            self._unlive(self.records.get(name))
            self.records[name] = loc
        else:
            old = self.archives.pop(name, None)
            if old is not None:
                self._unlive(old)
                self.shadowed.setdefault(name, set()).add(old[0])
            self._unlive(self.tombs.pop(name, None))
            (self.archives if kind == ARCHIVE else self.tombs)[name] = loc
        pack = self.packs.get(loc[0])
        if pack is not None:
            pack.live += RECORD_HEADER_SIZE + loc[2]

    def _unlive(self, loc: tuple | None) -> None:
        pack = self.packs.get(loc[0]) if loc else None
        if pack is not None:
            pack.live -= RECORD_HEADER_SIZE + loc[2]


def _resolve(batch: list[_Item], error: BaseException | None) -> None:
    hand_back([(item.fut, error, item.result) for item in batch])


class PacksOwnedElsewhere(RuntimeError):
    """A one-shot command attached to a disk that a running process writes packs to."""
