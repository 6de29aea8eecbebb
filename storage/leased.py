"""Run a gateway's once-per-cluster daemons only while it holds their leases.

Each daemon (repair, scrub collection, lifecycle, failed-disk watcher) is a coroutine
started when this gateway takes the daemon's lease (storage/index/leases.py) and
cancelled when it loses it, or when renewing has failed for so long that the lease may
have expired (the index unreachable): better to pause work than to run it twice. A
restarted gateway (same host and listen address: the same holder) takes its leases
back at once instead of waiting for them to expire.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Awaitable, Callable, Coroutine

from .index import leases

log = logging.getLogger("pocket.leases")


def holder_id(listen: str, worker: int | None = None) -> str:
    """Who holds a lease: a gateway is its host and listen address, and with several worker
    processes (storage/workers.py) each worker is a holder of its own, so a daemon runs in
    one worker of one gateway. A restarted worker is the same holder again."""
    base = f"{socket.gethostname()}/{listen}"
    return base if worker is None else f"{base}#{worker}"


async def every(interval: float, run_once: Callable[[], Awaitable], what: str, wait_first: bool = False) -> None:
    """The loop of a leased daemon that works in rounds: a failed round is logged and the next
    one comes `interval` later, so only losing the lease (cancellation) ends the daemon."""
    if wait_first:
        await asyncio.sleep(interval)
    while True:
        try:
            await run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %.0fs", what, interval)
        await asyncio.sleep(interval)


class LeasedDaemons:
    def __init__(self, index, writer, holder: str, seconds: float):
        self.index, self.writer, self.holder, self.seconds = index, writer, holder, seconds
        self._daemons: dict[str, Callable[[], Coroutine]] = {}
        self._running: dict[str, asyncio.Task] = {}
        self._held_until: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    def add(self, name: str, start: Callable[[], Coroutine]) -> None:
        self._daemons[name] = start

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep())

    def held(self) -> list[str]:
        return sorted(self._running)

    async def _keep(self) -> None:
        while True:
            for name in self._daemons:
                await self._renew(name)
            await asyncio.sleep(self.seconds / 3)

    async def _renew(self, name: str) -> None:
        started = time.monotonic()
        try:
            held = await self.writer.submit(
                lambda ops: leases.acquire(ops, name, self.holder, time.time(), self.seconds))
        except Exception as e:
            held = None
            if name in self._running and time.monotonic() > self._held_until.get(name, 0):
                log.error("lease %s: could not renew it (%r) before it expired; pausing %s until it is ours again",
                          name, e, name)
                await self._stop(name)
        if held:
            self._held_until[name] = started + self.seconds * 2 / 3
            if name not in self._running:
                log.info("lease %s taken by %s: running %s here", name, self.holder, name)
                self._running[name] = asyncio.get_running_loop().create_task(self._daemons[name]())
        elif held is False and name in self._running:
            log.warning("lease %s is held by another gateway now; stopping %s here", name, name)
            await self._stop(name)

    async def _stop(self, name: str) -> None:
        task = self._running.pop(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for name in list(self._running):
            await self._stop(name)
            try:
                await self.writer.submit(lambda ops, n=name: leases.release(ops, n, self.holder))
            except Exception as e:
                log.warning("lease %s: could not give it up (%r); it expires in %.0fs", name, e, self.seconds)
