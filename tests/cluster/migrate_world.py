"""The world of the gateway-side migration probes (test_migrate_gateway*.py, apart so that
xdist runs them side by side): a source S3 behind a link the test can cut, the `pocket
migrate` commands, what mig-data's copy and verify leave behind, and a writer that keeps
writing through every transition with the check that a side holds what it wrote.

The `world` fixture that starts them is conftest.py's."""
from __future__ import annotations

import random
import threading
import time
import urllib.request
from contextlib import contextmanager

from storage.config import load as load_config
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.migrate import state

from . import sources
from .harness import ProcCluster, pocket, wait_for
from .sources import SourceLink

# Every source these tests run against: moto here, SeaweedFS too once mig-data's starter is in sources.py.
STARTERS = [sources.start_moto] + [getattr(sources, name) for name in ("start_seaweedfs",) if hasattr(sources, name)]

BUCKET = "moving"
CUTOVER_WRITES = 20      # writes made after a cutover before both sides are checked


def migrate(c: ProcCluster, *args, ok=(0,)):
    return pocket(c, "migrate", *args, "--json", ok=ok)[1]


def enable(c: ProcCluster, link: SourceLink) -> dict:
    report = migrate(c, "enable", BUCKET, "--source-endpoint", link.endpoint, "--source-addressing", "path")
    assert report["buckets"][0]["state"] == "dual-write", report
    return report["buckets"][0]


@contextmanager
def index_of(c: ProcCluster):
    index = Index(LmdbBackend(load_config(c.config).index_path))
    try:
        yield index
    finally:
        index.close()


def copied_and_verified(c: ProcCluster) -> None:
    """What `pocket migrate copy` and a clean `pocket migrate verify` leave behind (mig-data's half)."""
    with index_of(c) as index:
        state.transition(index, BUCKET, state.BACKFILLED, "copy")
        state.transition(index, BUCKET, state.VERIFIED, "verify")
        m = state.load(index, BUCKET)
        m.last_verify = {"at": time.time(), "clean": True, "checked": 0, "mismatched": 0, "missing": 0}
        state.save(index, m)


def status(c: ProcCluster) -> dict:
    return migrate(c, "status", BUCKET)["buckets"][0]


def metric(c: ProcCluster, series: str) -> float:
    with urllib.request.urlopen(c.endpoint + "/_pocket/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    raise AssertionError(f"{series} is not exported")


class Writer(threading.Thread):
    """Writes, overwrites and deletes a few keys through the gateway, remembering what it wrote."""

    KEYS = [f"w/{i} é+% {i}" for i in range(10)]

    def __init__(self, client, seed: int):
        super().__init__(daemon=True)
        self.client, self.rng = client, random.Random(seed)
        self.model: dict[str, tuple[bytes, dict, dict] | None] = {}
        self.turn = threading.Lock()      # held during one operation; `paused` takes it
        self.done = threading.Event()
        self.errors: list[str] = []
        self.ops = 0

    def step(self) -> None:
        key = self.rng.choice(self.KEYS)
        if self.model.get(key) is not None and self.rng.random() < 0.25:
            self.client.delete_object(Bucket=BUCKET, Key=key)
            self.model[key] = None
        else:
            body = self.rng.randbytes(self.rng.choice([0, 1, 2_000, 150_000, 600_000]))
            meta = {"op": str(self.ops)}
            tags = {"writer": f"t{self.ops}"} if self.rng.random() < 0.5 else {}
            self.client.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta,
                                   **({"Tagging": f"writer=t{self.ops}"} if tags else {}))
            self.model[key] = (body, meta, tags)
        self.ops += 1

    def run(self) -> None:
        while not self.done.is_set():
            with self.turn:
                try:
                    self.step()
                except Exception as e:   # noqa: BLE001 — the test asserts there were none
                    self.errors.append(repr(e))
                    return
            time.sleep(0.02)   # pacing: a steady writer, not a flood

    @contextmanager
    def paused(self):
        with self.turn:
            yield

    def writes_more(self, n: int, what: str) -> None:
        """Wait for `n` more writes (or the writer's first error) from now."""
        ops = self.ops
        wait_for(what, lambda: self.ops >= ops + n or self.errors)

    def stop(self) -> None:
        self.done.set()
        self.join(60)


def cut_over_under_writes(c: ProcCluster, writer: Writer, src, gw) -> None:
    """cutover while the writer writes, then some more writes: both sides hold every one of
    them, Pocket as the authoritative side and the source as its mirror."""
    assert migrate(c, "cutover", BUCKET)["buckets"][0]["state"] == "cutover"
    writer.writes_more(CUTOVER_WRITES, "writes after cutover")
    with writer.paused():
        holds(gw, writer.model, "Pocket, authoritative after cutover")
        holds(src, writer.model, "source, mirrored after cutover")


def rolled_back_under_writes(c: ProcCluster, writer: Writer, src, n: int) -> None:
    """rollback while the writer writes, then `n` more writes: the source, authoritative
    again, holds every one of them."""
    assert migrate(c, "rollback", BUCKET)["buckets"][0]["state"] == "dual-write"
    writer.writes_more(n, "writes after rollback")
    with writer.paused():
        holds(src, writer.model, "source, authoritative again after rollback")


def holds(client, model: dict, label: str) -> None:
    """`client`'s bucket holds exactly what the writer wrote: keys, bytes, metadata, tags."""
    listed = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        listed |= {o["Key"] for o in page.get("Contents", [])}
    assert listed == {k for k, v in model.items() if v is not None}, label
    for key, value in model.items():
        if value is None:
            continue
        body, meta, tags = value
        got = client.get_object(Bucket=BUCKET, Key=key)
        assert got["Body"].read() == body, f"{label}: {key}"
        assert got["Metadata"] == meta, f"{label}: {key}"
        tag_set = client.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
        assert {t["Key"]: t["Value"] for t in tag_set} == tags, f"{label}: {key}"
