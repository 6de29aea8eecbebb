"""Which buckets are migrating and how to reach their sources, as the running gateway sees it.

The state records live in the index (state.py); every lookup compares the index's
migration generation (one small read) and reloads the records when it moved, so a
transition made by a one-shot `pocket migrate` process takes effect on the next request.
Source clients are made once per source setting and kept.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass

from . import source as source_client
from . import state
from .credentials import load_keys
from .source_store import SourceStore

log = logging.getLogger("pocket.migrate")


@dataclass(frozen=True)
class Route:
    """A migrating bucket's routing now: which side answers, where the source is."""
    migration: state.Migration
    store: SourceStore

    @property
    def source_first(self) -> bool:
        """Before cutover the source is authoritative: written first, read from, listed from."""
        return self.migration.authoritative == "source"

    @property
    def leader(self) -> str:
        return "source" if self.source_first else "pocket"

    @property
    def follower(self) -> str:
        """The side a failed write is journaled for."""
        return "pocket" if self.source_first else "source"


class Routes:
    def __init__(self, index, keys_file: str | None = None):
        self.index, self.keys_file = index, keys_file
        self.generation = -1
        self._migrations: dict[str, state.Migration] = {}
        self._stores: dict[tuple, SourceStore] = {}
        self._clients: dict[tuple, object] = {}

    def _fetch(self, known: int) -> tuple[int, list[state.Migration] | None]:
        """(generation, every migration record if the generation is not `known`): one read txn."""
        with self.index.read() as ops:
            generation = state.generation(ops)
            return generation, (None if generation == known else state.all_records(ops))

    def _adopt(self, fetched: tuple[int, list[state.Migration] | None]) -> None:
        generation, records = fetched
        if records is None or generation == self.generation:
            return
        self._migrations = {m.bucket: m for m in records}
        self.generation = generation
        log.info("migration states (generation %d): %s", generation,
                 ", ".join(f"{b} {m.state}" for b, m in sorted(self._migrations.items())) or "none")

    def _refresh(self) -> None:
        self._adopt(self._fetch(self.generation))

    async def _arefresh(self) -> None:
        """The refresh for asyncio code: the read goes through `index.call` (off the loop on PostgreSQL)."""
        self._adopt(await self.index.call(self._fetch, self.generation))

    def migration(self, bucket: str) -> state.Migration | None:
        self._refresh()
        return self._migrations.get(bucket)

    async def amigration(self, bucket: str) -> state.Migration | None:
        await self._arefresh()
        return self._migrations.get(bucket)

    def known(self, bucket: str) -> state.Migration | None:
        """The bucket's migration as of the last refresh (a sync caller on the loop, right after an async one)."""
        return self._migrations.get(bucket)

    def all(self) -> list[state.Migration]:
        self._refresh()
        return list(self._migrations.values())

    async def aall(self) -> list[state.Migration]:
        await self._arefresh()
        return list(self._migrations.values())

    def get(self, bucket: str) -> Route | None:
        """The bucket's route while writes go to both sides (dual-write through cutover), else None."""
        return self._route(self.migration(bucket))

    async def aget(self, bucket: str) -> Route | None:
        return self._route(await self.amigration(bucket))

    def _route(self, m: state.Migration | None) -> Route | None:
        if m is None or not m.routed:
            return None
        return Route(m, self.store(m))

    def store(self, m: state.Migration) -> SourceStore:
        """The source of a migration (also after it stopped routing: uploads begun there finish there)."""
        s = m.source
        settings = (m.bucket, s.bucket, s.endpoint, s.region, s.profile, s.addressing)
        found = self._stores.get(settings)
        if found is None:
            found = self._stores[settings] = SourceStore(self._client(m), s.bucket, source_client.describe(s))
        return found

    def _client(self, m: state.Migration):
        """One boto3 client per way of reaching a source, shared by its buckets: a client
        holds a connection pool and a parsed service model (megabytes), and an estate of
        thousands of buckets on one endpoint needs one. Keys given per bucket
        (credentials.py) keep a client of their own."""
        s = m.source
        own_keys = load_keys(self.keys_file, s) is not None
        way = (s.endpoint, s.region, s.profile, s.addressing, s.bucket if own_keys else None)
        if way not in self._clients:
            self._clients[way] = source_client.client(s, self.keys_file)
        return self._clients[way]


class KeyLocks:
    """One asyncio lock per (bucket, key) in use: a request and a journal retry of the same
    key never interleave, so a retry cannot put back what a newer write replaced."""

    def __init__(self):
        self._locks: dict[tuple[str, str], list] = {}

    @asynccontextmanager
    async def hold(self, bucket: str, key: str):
        entry = self._locks.setdefault((bucket, key), [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[(bucket, key)]
