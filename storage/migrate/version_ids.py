"""The internal ids copied versions get in Pocket.

An internal id orders a key's versions in the index. A copied version's comes from the
source's Last-Modified (not the time of the copy), so a history copied out of order, or
re-copied later by `verify --fix`, still sorts as the source has it.
"""
from __future__ import annotations

import os

ID_STEP = 1 << 20         # ns between the internal ids of versions that share a Last-Modified second


def internal_ids(history: list[dict]) -> list[str]:
    """Internal ids for a key's versions listed oldest first: from Last-Modified, strictly
    increasing (several versions often share one second) with room between them for a
    version re-copied later (verify --fix)."""
    out, last = [], 0
    for v in history:
        ns = max(int(v["last_modified"] * 1e9), last + ID_STEP)
        last = ns
        out.append(f"{ns:016x}{os.urandom(8).hex()}")
    return out
