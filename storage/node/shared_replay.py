"""The nonces a node has seen, shared by every process serving its port.

Why: a node of several processes (node/processes.py) hands each connection to whichever
process accepts it, so a captured request replayed on a new connection would reach a
process whose own `auth.ReplayCache` never saw its nonce. The link's rule is per node: a
nonce seen once is refused, whichever process sees it again. So the processes keep the
nonces in one table of memory they all map (a memfd the master makes before it forks),
and a restarted process remembers what its predecessor admitted.

The table is two hash tables of (64-bit hash of the nonce, timestamp), open addressing,
each taking admissions for GENERATION seconds (twice the clock window): when the current
one is that old, or half full, the older one is cleared and becomes current. Clearing
forgets nonces, so the floor (requests signed no later than it are refused, as
ReplayCache's) rises to the newest timestamp that table held: past the clock window when
the table was cleared for its age, recent only when the node admits more than the table
holds, as ReplayCache's bound does. The floor starts at the master's start.

One process changes the table at a time under a POSIX record lock on the memfd, which
the kernel releases when its holder dies, SIGKILL included, so a killed process never
wedges its siblings. A process killed mid-update leaves at worst one entry half written:
a stray hash (refuses nothing real) or a missing one (one nonce of a request that died
with the process).
"""
from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time

import xxhash

from .auth import MAX_SKEW

GENERATION = 2 * MAX_SKEW      # seconds of admissions per table: its nonces outlive the clock window
SLOTS = 1 << 20                # per table: 16 MiB each, half of it used at most
_HEADER = struct.Struct("<qqqqqqq")   # floor, current table, its start (ms), count[2], newest stamp[2]
_SLOT = struct.Struct("<Qq")          # hash of the nonce (0: empty), its timestamp (ms)


class SharedReplayCache:
    """`auth.ReplayCache`'s `admit`, for every process forked after this was made."""

    def __init__(self, slots: int = SLOTS, generation: float = GENERATION):
        assert slots & (slots - 1) == 0, "slots must be a power of two"
        self.slots, self.generation, self.limit = slots, generation, slots // 2
        self._fd = os.memfd_create("pocket-node-nonces", os.MFD_CLOEXEC)
        os.set_inheritable(self._fd, False)     # fork keeps it all the same; an exec'd program does not
        size = _HEADER.size + 2 * slots * _SLOT.size
        os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
        now = _ms(time.time())
        _HEADER.pack_into(self._map, 0, now - 1, 0, now, 0, 0, 0, 0)

    @property
    def floor(self) -> int:
        return _HEADER.unpack_from(self._map, 0)[0]

    def admit(self, nonce: str, stamp: int) -> str | None:
        """None if the request is fresh (and remember its nonce), else why not."""
        key = xxhash.xxh3_64_intdigest(nonce.encode()) or 1
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            floor, current = self._turn(_ms(time.time()))
            if stamp <= floor:
                return "timestamp older than the node's replay memory (node restarted, or too many requests)"
            if self._find(1 - current, key) is not None:
                return "nonce already used (a replayed request)"
            slot = self._find(current, key, free=True)
            if _SLOT.unpack_from(self._map, slot)[0] == key:
                return "nonce already used (a replayed request)"
            _SLOT.pack_into(self._map, slot, key, stamp)
            self._count(current, stamp)
            return None
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _turn(self, now: int) -> tuple[int, int]:
        """The floor and the current table, after switching tables if the current one is full or old."""
        floor, current, started, *counts_and_newest = _HEADER.unpack_from(self._map, 0)
        counts, newest = counts_and_newest[:2], counts_and_newest[2:]
        if now - started < self.generation * 1000 and counts[current] < self.limit:
            return floor, current
        older = 1 - current
        floor = max(floor, newest[older])
        start = self._table(older)
        self._map[start:start + self.slots * _SLOT.size] = bytes(self.slots * _SLOT.size)
        counts[older] = newest[older] = 0
        _HEADER.pack_into(self._map, 0, floor, older, now, *counts, *newest)
        return floor, older

    def _count(self, table: int, stamp: int) -> None:
        values = list(_HEADER.unpack_from(self._map, 0))
        values[3 + table] += 1
        values[5 + table] = max(values[5 + table], stamp)
        _HEADER.pack_into(self._map, 0, *values)

    def _table(self, table: int) -> int:
        return _HEADER.size + table * self.slots * _SLOT.size

    def _find(self, table: int, key: int, free: bool = False) -> int | None:
        """The offset of `key`'s slot in `table`; if absent, the free slot it would take
        (`free`) or None. A table is never more than half full, so a free slot comes soon."""
        base, mask = self._table(table), self.slots - 1
        i = key & mask
        while True:
            offset = base + i * _SLOT.size
            found = _SLOT.unpack_from(self._map, offset)[0]
            if found == key:
                return offset
            if found == 0:
                return offset if free else None
            i = (i + 1) & mask


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
