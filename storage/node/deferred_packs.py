"""The packs of a disk attached by a one-shot command, scanned only when a packed archive
may be read (`DiskStore.attach(lazy_packs=True)`).

Why: scanning a disk's packs checks every record header (~7 us each; 9,000 records on six
disks were a quarter of an empty bucket's `pocket migrate verify --deep`, bench/RESULTS.md,
Session 11), and a command that reads only large archives never needs the map.

Why the scan can be skipped for a name and stay right: a name can be in a pack and in a
file at once, and then the packed copy wins (store.py). Its owner packs an archive only
when it is at most `pack_threshold` bytes, so a file larger than the current threshold has
a packed twin only from a time the threshold was higher; both hold the same bytes by
construction (repair rewrites archives byte for byte), and when the file is the damaged
one, its repair writes a file again (too large to pack), which deletes the twin. Any other
name, every listing, delete and record read scans the packs first. `stats()` does not:
the heartbeat asks for it at every start.
"""
from __future__ import annotations

import os
import threading
from typing import Callable

from .packs import PackSet


class DeferredPacks:
    """A read-only PackSet's stand-in that loads it at the first lookup that needs it."""

    def __init__(self, packs: PackSet, path_of: Callable[[str], str], threshold: int):
        self._packs, self._path_of, self._threshold = packs, path_of, threshold
        self._loaded = False
        self._lock = threading.Lock()
        self.readonly = packs.readonly = True

    def _load(self) -> PackSet:
        if not self._loaded:
            with self._lock:     # reads come from the loop and from the I/O threads
                if not self._loaded:
                    self._packs.load(readonly=True)
                    self._loaded = True
        return self._packs

    def _filed(self, name: str) -> bool:
        """Whether `name` is a file larger than its owner packs: no packed twin wins over it."""
        if self._loaded:
            return False
        try:
            return os.stat(self._path_of(name)).st_size > self._threshold
        except FileNotFoundError:
            return False

    def archive_size(self, name: str) -> int | None:
        return None if self._filed(name) else self._load().archive_size(name)

    def read_archive(self, name: str, offset: int, length: int, cached_only: bool = False) -> bytes | None:
        return None if self._filed(name) else self._load().read_archive(name, offset, length, cached_only)

    def stamp(self, name: str) -> tuple | None:
        return None if self._filed(name) else self._load().stamp(name)

    def stats(self) -> dict:
        """The loaded packs' figures; an unscanned disk's count as none."""
        return self._packs.stats()

    def close(self) -> None:
        self._packs.close()

    def __getattr__(self, attr: str):
        return getattr(self._load(), attr)
