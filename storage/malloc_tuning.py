"""Keeping freed memory in the process for a one-shot pass that moves large buffers
(`pocket migrate verify --deep`), instead of handing it back to the kernel at every free.

Why: glibc serves an allocation above its mmap threshold (128 KiB at first, raised only
as far as the largest block freed so far) with a fresh mmap, and gives heap memory back
once 128 KiB lie free at its top. A deep verify allocates a MiB or more per source chunk,
per fragment window read and per segment joined, and frees each a moment later: every
one came back as fresh pages, zeroed by the kernel on first touch: a verify --deep of
8 x 128 MiB took 150,000-200,000 minor faults and ~1.0 s of system time of its ~2.6 CPU
s (perf: clear_page and the fault path). With freed memory kept, the next buffer reuses
those pages.
And with 2 arenas rather than glibc's 8 per core, the source's receiving threads, the
disk reads' executor threads and the event loop share a few heaps, so what one frees the
next reuses instead of each thread's arena growing its own. Both: ~55,000 faults, 0.7 s
of system time, peak resident memory ~120 MB per process (was ~150-185); what is left is
about the first touch of the working set.
"""
from __future__ import annotations

import ctypes
import logging

from .lifeline import libc

log = logging.getLogger("pocket.malloc")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_ABOVE = 32 << 20      # glibc's largest: buffers up to it come from the reused heap
TRIM_ABOVE = 256 << 20     # memory free at the heap's top is given back past this
ARENAS = 2                 # a buffer one thread frees is reused by the next, whichever allocates it


def keep_freed_memory() -> bool:
    """Call once, early in a one-shot process (a forked child inherits it). False where
    the C library is not glibc (nothing changed: only the faults are saved)."""
    try:
        mallopt = libc().mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = all(mallopt(option, value) == 1 for option, value in
             ((_M_MMAP_THRESHOLD, MMAP_ABOVE), (_M_TRIM_THRESHOLD, TRIM_ABOVE), (_M_ARENA_MAX, ARENAS)))
    if not ok:
        log.debug("mallopt refused: freed memory is returned as before")
    return ok
