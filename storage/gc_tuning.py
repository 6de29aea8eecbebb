"""The garbage collector of a serving process (gateway, node) or a one-shot pass (`pocket
repair`, `scrub`: cli/common.run_tool), tuned once it is ready.

Why: CPython collects its youngest generation every 700 container allocations, and a
request allocates hundreds (headers, dicts of records, futures); a 1,000-key listing
decodes 1,000 records, and a third of the index's share of that page's CPU was the
collector (gc.disable() measured it). Almost nothing a request allocates lives in a
reference cycle, so reference counting frees it, and the collector only has to find
the rare cycles (a repair of a lost disk's small archives spent ~5 % of its CPU in the
collector: perf of `pocket repair`). So: everything made while starting (modules, config, the app) is
frozen out of the collector's sight (gc.freeze: never scanned again, and pages a forked
worker shares with its master stay shared), and the young generation is collected
every YOUNG allocations instead of 700. Cycles are still collected, just less often.
"""
from __future__ import annotations

import gc

YOUNG = 20_000


def tune(collect: bool = True) -> None:
    """Call once, after start-up, before serving. `collect=False` for a one-shot command:
    the full collection first (only to keep start-up's garbage out of the frozen set, which
    a server lives with for days) cost ~8 ms of an empty bucket's `pocket migrate copy`."""
    if collect:
        gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
