"""Leases in the index: which gateway runs each once-per-cluster daemon.

Several gateways share one index (PostgreSQL), but repair, the collection of scrub
findings, lifecycle passes and the failed-disk watcher must run in one of them at a
time. Each is held by a lease, a meta row `lease/<name>` = {"holder", "expires"}: a
gateway takes a lease that is free, expired or already its own, and renews it well
before it expires; a gateway that dies stops renewing, and another takes the lease
once it has expired. Taking and renewing are one transaction each (atomic in both
backends: LMDB has one writer, PostgreSQL runs it SERIALIZABLE), so two gateways never
hold one lease at once. Times are wall-clock seconds: gateways' clocks must agree to
well within a lease's length (NTP does).
"""
from __future__ import annotations

from .ops import IndexTxn

PREFIX = "lease/"
NAMES = ("scrub", "repair", "failures", "lifecycle")   # the daemons a gateway runs under leases


def acquire(ops: IndexTxn, name: str, holder: str, now: float, seconds: float) -> bool:
    """Take or renew lease `name` for `holder` until now + seconds; False if another holds it."""
    current = ops.get_meta(PREFIX + name)
    if current and current["holder"] != holder and current["expires"] > now:
        return False
    ops.put_meta(PREFIX + name, {"holder": holder, "expires": now + seconds,
                                 "since": current["since"] if current and current["holder"] == holder else now})
    return True


def release(ops: IndexTxn, name: str, holder: str) -> None:
    """Give a lease up at once (a gateway stopping cleanly), if it is still ours."""
    current = ops.get_meta(PREFIX + name)
    if current and current["holder"] == holder:
        ops.put_meta(PREFIX + name, {**current, "expires": 0})


def holders(ops: IndexTxn, names) -> dict[str, dict | None]:
    """Each lease's record (None: never taken), for `pocket status` and tests."""
    return {name: ops.get_meta(PREFIX + name) for name in names}
