"""The thread pool every Pocket process runs its blocking work in."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def io_executor() -> ThreadPoolExecutor:
    """Blocking file work (writes, fsync, preads) and hashing run here, off the event loop.

    The default executor has cpu+4 threads; fsyncs of many concurrent uploads would
    queue behind each other there."""
    return ThreadPoolExecutor(max_workers=64, thread_name_prefix="pocket-io")
