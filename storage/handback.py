"""Outcomes of work done by a writer thread handed back to the coroutines awaiting them.

The pack writers (node/packs.py) and the index writer (index/batcher.py) each commit a
batch on a thread of their own; the callers' futures belong to event loops, which may
only be touched from their own thread. One `call_soon_threadsafe` per loop per batch, not
per caller: each is a write to the loop's wake-up pipe and a pass of the loop.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Any


def hand_back(outcomes: list[tuple[asyncio.Future, BaseException | None, Any]]) -> None:
    """(future, exception or None, result) for each caller; called from the writer thread."""
    by_loop: dict = collections.defaultdict(list)
    for outcome in outcomes:
        by_loop[outcome[0].get_loop()].append(outcome)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:  # the loop is gone; so is whoever waited
            pass


def _settle(items: list) -> None:
    for fut, error, result in items:
        if fut.done():  # the caller was cancelled
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
