"""Concurrent writes of one key through both gateway workers leave both sides of a migrating
bucket with the same last version, before cutover (source leads, Pocket follows) and after
(Pocket leads, the source is its mirror, which a rollback would serve).

KeyLocks order the writes of one key within one worker process only; two PUTs through two
workers can reach the follower in the opposite order of the leader's. The follower write
that lands last sees the sides differ and journals the key; the journal's retry copies the
leader's current version until they agree (routing.Bookkeeping.follow, journal.py).

After cutover the overtaking is also made certain, not left to the storm's timing: the
link to the source is slowed, a 1 MB PUT's mirror is still on its way when a 2 KB PUT of
the same key (on a new connection: the other worker half of the time) commits and is
mirrored; without the check the source kept the 1 MB version for most of the keys.

Real processes: moto as the source behind a SourceLink, an embedded Pocket gateway with two
workers.
"""
from __future__ import annotations

import hashlib
import random
import threading

from botocore.exceptions import ClientError

from .harness import QUIET, metric, pocket, wait_for
from .migrate_world import index_of
from .sources import enable, moto_behind_link

BUCKET = "moving"
KEYS = ("a é+%", "b", "c/d")
OVERTAKEN = [f"overtaken/{i}" for i in range(6)]
WRITERS = 8     # threads, each with its own connection: the kernel spreads them over both workers
ROUNDS = 9      # each round every writer PUTs the same key at once


def _storm(c, seed: int) -> None:
    """ROUNDS rounds of WRITERS simultaneous PUTs of one key (unique bodies), through both workers."""
    start, errors = threading.Barrier(WRITERS, timeout=120), []

    def writer(no: int) -> None:
        gw, rnd = c.client(), random.Random(seed * 100 + no)
        try:
            for r in range(ROUNDS):
                start.wait()
                # half the writers send 1 MB, half 2 KB: a big body begun first lands last
                size = 1_000_000 + rnd.randrange(1000) if no % 2 else rnd.randrange(1000, 3000)
                gw.put_object(Bucket=BUCKET, Key=KEYS[r % len(KEYS)], Body=rnd.randbytes(size),
                              Metadata={"writer": str(no), "round": str(r)})
        except Exception as e:   # noqa: BLE001 — asserted empty below
            errors.append(repr(e))
            start.abort()
    threads = [threading.Thread(target=writer, args=(no,)) for no in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors


def _drained(c) -> None:
    wait_for("the journal to drain", lambda: metric(c.endpoint, "pocket_migrate_journal_entries",
                                                    f'bucket="{BUCKET}"') == 0, timeout=120, every=0.3)
    assert pocket(c, "migrate", "status", BUCKET, "--json")[1]["buckets"][0]["journal"] == 0


def _overtaken(c, link, key: str, rnd: random.Random) -> None:
    """A big PUT whose mirror is slow, then a small PUT of the key once Pocket committed the big one."""
    big, small = rnd.randbytes(1_000_000), rnd.randbytes(2000)
    first = threading.Thread(target=lambda: c.client().put_object(Bucket=BUCKET, Key=key, Body=big))
    link.upload_rate = 1_000_000
    first.start()
    gw, etag = c.client(), f'"{hashlib.md5(big).hexdigest()}"'
    wait_for(f"Pocket to commit the big {key}", lambda: _etag(gw, key) == etag, every=0.05)
    c.client().put_object(Bucket=BUCKET, Key=key, Body=small)
    first.join(120)
    link.upload_rate = None


def _etag(client, key: str) -> str | None:
    try:
        return client.head_object(Bucket=BUCKET, Key=key)["ETag"]
    except ClientError:
        return None


def test_concurrent_overwrites_through_both_workers_converge_on_both_sides(tmp_path, monkeypatch):
    with moto_behind_link(str(tmp_path), monkeypatch, embedded=True, sections=QUIET) as (source, link, c):
        _converge(source, link, c)


def _converge(source, link, c) -> None:
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    enable(c, BUCKET, link.endpoint)
    journaled = 'pocket_migrate_writes_total{bucket="moving",outcome="journaled",side="%s"}'
    followed = 'pocket_migrate_writes_total{bucket="moving",outcome="ok",side="%s"}'
    plain = random.Random(4)
    gw.put_object(Bucket=BUCKET, Key="plain", Body=plain.randbytes(5000))     # no race: nothing owed
    gw.put_object(Bucket=BUCKET, Key="plain-typed", Body=plain.randbytes(5000), ContentType="text/plain",
                  Metadata={"m": "1"}, Tagging="t=1", CacheControl="no-cache")
    assert metric(c.endpoint, journaled % "pocket") == 0 and metric(c.endpoint, followed % "pocket") == 2

    _storm(c, seed=1)             # dual-write: the source leads, Pocket follows
    _drained(c)
    with index_of(c) as index:    # (reads still come from the source: Pocket's own record)
        for key in KEYS:
            assert index.get_object(BUCKET, key)["etag"] == src.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"'), key
    pocket(c, "migrate", "copy", BUCKET, "--json")
    report = pocket(c, "migrate", "verify", BUCKET, "--json", ok=(0, 1))[1]
    assert report["clean"], report["buckets"][0].get("findings")
    assert pocket(c, "migrate", "cutover", BUCKET, "--json")[1]["buckets"][0]["state"] == "cutover"

    mirrored = metric(c.endpoint, followed % "source")     # (so far as the leader, before cutover)
    gw.put_object(Bucket=BUCKET, Key="plain", Body=plain.randbytes(6000))
    gw.put_object(Bucket=BUCKET, Key="plain-typed", Body=plain.randbytes(6000), ContentType="text/plain",
                  Metadata={"m": "2"}, Tagging="t=2", CacheControl="no-cache")
    gw.delete_object(Bucket=BUCKET, Key="plain")
    assert metric(c.endpoint, journaled % "source") == 0 and metric(c.endpoint, followed % "source") == mirrored + 3

    _storm(c, seed=2)             # cutover: Pocket leads, the source follows
    rnd = random.Random(3)
    for key in OVERTAKEN:
        _overtaken(c, link, key, rnd)
    _drained(c)
    for key in (*KEYS, *OVERTAKEN):
        here, there = gw.get_object(Bucket=BUCKET, Key=key), src.get_object(Bucket=BUCKET, Key=key)
        assert (here["ETag"], here["Metadata"]) == (there["ETag"], there["Metadata"]), key
        assert here["Body"].read() == there["Body"].read(), key
