"""`pocket migrate copy --rate` holds its limit, and `status` measures the copy's rate (and
so its ETA) over the copy's own activity, not since `enable`: a copy run a day after
`enable`, or resumed after a pause, must not look a day slow.

Real processes: moto as the source, an embedded Pocket, the `pocket migrate` commands.
"""
from __future__ import annotations

import random
import time

from .migrate_world import index_of
from .sources import enable, moto_and_pocket, pocket_migrate
from storage.migrate import state

BUCKET = "throttled"
LIMIT = 4_000_000                # --rate 4MB: bytes per second, for all workers
OBJECTS, SIZE = 6, 4_000_000     # 24 MB: six seconds at the limit


def test_copy_holds_its_rate_and_status_measures_the_copy_not_the_idle_time(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True) as (source, c):
        src, rnd = source.client(), random.Random(71)
        src.create_bucket(Bucket=BUCKET)
        bodies = {f"big/{i}": rnd.randbytes(SIZE) for i in range(OBJECTS)}
        for key, body in bodies.items():
            src.put_object(Bucket=BUCKET, Key=key, Body=body)
        enable(c, BUCKET, source.endpoint)
        with index_of(c) as index:     # as if `enable` ran an hour before this copy
            m = state.load(index, BUCKET)
            for h in m.history:
                h["at"] -= 3600
            m.created -= 3600
            state.save(index, m)

        began = time.monotonic()
        _, report = pocket_migrate(c, source, "copy", BUCKET, "--rate", "4MB", "--json")
        wall = time.monotonic() - began
        [b] = report["buckets"]
        assert b["copied"] == OBJECTS and b["bytes"] == OBJECTS * SIZE and b["errors"] == 0, b
        # a token bucket of one second: at most the limit plus one second's burst over the copy
        assert b["bytes"] / wall <= LIMIT * (1 + 1 / (OBJECTS * SIZE / LIMIT - 1)) * 1.05, (b, wall)
        assert b["bytes_per_second"] <= LIMIT * 1.25, b
        # held, not starved: loose, a shared box copies slower (2.15 MB/s at load 37 on 2 cores)
        assert b["bytes_per_second"] >= LIMIT * 0.2, b
        gw = c.client()
        for key, body in bodies.items():
            assert gw.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key

        [row] = pocket_migrate(c, source, "status", BUCKET, "--json")[1]["buckets"]
        assert row["bytes_copied"] == OBJECTS * SIZE
        # the copy's rate, not 24 MB over the hour since enable (6.7 kB/s)
        assert LIMIT * 0.2 <= row["rate_bytes_per_s"] <= LIMIT * 1.25, row
        assert abs(row["rate_bytes_per_s"] - b["bytes_per_second"]) <= 0.25 * b["bytes_per_second"], (row, b)

        with index_of(c) as index:     # twice the bytes at the source: the ETA is another copy's time
            m = state.load(index, BUCKET)
            m.counters["source_bytes"] = 2 * OBJECTS * SIZE
            state.save(index, m)
        [row] = pocket_migrate(c, source, "status", BUCKET, "--json")[1]["buckets"]
        assert OBJECTS * SIZE / LIMIT / 1.25 <= row["eta_seconds"] <= OBJECTS * SIZE / LIMIT / 0.2, row
