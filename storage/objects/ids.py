"""Time-ordered ids: newer ids sort later, so "newest wins" needs no clock in the record."""
from __future__ import annotations

import os
import time


def new_id() -> str:
    """32 hex chars: 16 of nanoseconds since the epoch, 16 random."""
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


def id_time(ident: str) -> float:
    return int(ident[:16], 16) / 1e9
