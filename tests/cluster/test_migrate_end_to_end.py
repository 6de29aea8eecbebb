"""The whole move, as an operator runs it, on each kind of source (moto, SeaweedFS, a
second Pocket), plain and versioned buckets: plan, enable dual-write while a writer keeps
writing, overwriting and deleting through the gateway, a copy SIGKILLed midway and resumed,
verify, cutover, rollback, cutover, detach. At every step the authoritative side holds what
the writer wrote; at detach Pocket alone equals the source, version ids, Last-Modified,
headers, metadata, tags and checksums included (migrate_data.snapshot)."""
from __future__ import annotations

import datetime
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from . import sources
from .harness import REPO, ProcCluster, wait_for
from .migrate_data import snapshot
from .migrate_world import (BUCKET, Writer, cut_over_under_writes, enable, holds, migrate, rolled_back_under_writes,
                            status)
from .sources import SourceLink
from .test_migrate_gateway_verify import seed

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)

COPIED = re.compile(r"copied \S+?/(.+) version (\S+) \(")
BULK = 40


@pytest.fixture(params=[(sources.start_moto, False), (sources.start_seaweedfs, True),
                        (sources.start_pocket_source, True)],
                ids=["moto-plain", "seaweedfs-versioned", "pocket-versioned"])
def move(request, tmp_path, monkeypatch):
    starter, versioned = request.param
    source = starter(str(tmp_path / "source"))
    link = SourceLink(int(source.endpoint.rsplit(":", 1)[1]))
    for name, value in {**source.credentials_env(), **SourceLink.ENV}.items():
        monkeypatch.setenv(name, value)
    cluster = None
    try:
        cluster = ProcCluster(str(tmp_path / "cluster"), embedded=True).start()
        yield source, link, cluster, versioned
    finally:
        if cluster:
            cluster.close()
        link.close()
        source.close()


def _seed_source(src, versioned: bool) -> dict:
    """What the source holds before the move: the shared seed (0 bytes to a multipart object
    with an unusual part size, keys with unicode, spaces, % and +), objects with every
    standard header, and in a versioned bucket overwrites and a delete marker."""
    rng = random.Random(21)
    src.create_bucket(Bucket=BUCKET)
    if versioned:
        src.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    model = seed(src, rng)
    expires = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
    for i in range(BULK):
        key, body = f"bulk/{i:02d} ✓", rng.randbytes(20_000 + 977 * i)
        src.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata={"i": str(i)}, ContentType="application/x-test",
                       CacheControl="max-age=77", ContentLanguage="fr", ContentEncoding="identity",
                       Expires=expires, ContentDisposition=f"inline; n={i}")
        model[key] = (body, {"i": str(i)}, {})
    if versioned:
        for key in ("seed/1 ü %2B+1", "bulk/03 ✓"):      # a second version of each
            body = rng.randbytes(5_555)
            src.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata={"v": "2"})
            model[key] = (body, {"v": "2"}, {})
        src.delete_object(Bucket=BUCKET, Key="bulk/04 ✓")                  # a delete marker
        model["bulk/04 ✓"] = None
    return model


def _copy_killed_midway(c: ProcCluster, log_path) -> None:
    """`pocket -v migrate copy` at a limited rate, SIGKILLed once some versions are in."""
    proc = subprocess.Popen([sys.executable, "-m", "cli", "-v", "migrate", "copy", BUCKET, "--rate", "2MB",
                             "--config", c.config, "--json"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=open(log_path, "w"), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for("a copy halfway", lambda: len(COPIED.findall(log_path.read_text())) >= 10 or proc.poll() is not None,
                 timeout=120, every=0.05)
        assert proc.poll() is None, "the copy ended before it could be killed:\n" + log_path.read_text()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _copy_until_backfilled(c: ProcCluster) -> list[dict]:
    """Resume: passes until backfilled (a pass during which keys changed at the source says
    to run it again)."""
    reports, deadline = [], time.monotonic() + 300
    while True:
        reports.append(migrate(c, "copy", BUCKET))
        if status(c)["state"] == "backfilled":
            return reports
        assert reports[-1]["buckets"][0]["changed_during_copy"] > 0, reports[-1]
        assert time.monotonic() < deadline, f"copy never reached backfilled: {reports[-1]}"


def _verified(c: ProcCluster, writer: Writer, src, gw) -> None:
    with writer.paused():
        report = migrate(c, "verify", BUCKET, "--deep")
        assert status(c)["state"] == "verified", report
        holds(src, writer.model, "source, authoritative before cutover")
        holds(gw, writer.model, "gateway before cutover")


def test_the_whole_move(move, tmp_path):
    source, link, c, versioned = move
    src, gw = source.client(), c.client()
    seeded = _seed_source(src, versioned)
    planned = migrate(c, "plan", BUCKET, "--source-endpoint", link.endpoint, "--source-addressing", "path")
    assert planned["buckets"][0]["objects"] == sum(v is not None for v in seeded.values()), planned
    enable(c, link)
    assert (gw.get_bucket_versioning(Bucket=BUCKET).get("Status") == "Enabled") == versioned
    writer = Writer(gw, seed=23)
    writer.model.update(seeded)
    writer.start()
    try:
        log_path = tmp_path / "killed-copy.log"
        _copy_killed_midway(c, log_path)
        before = COPIED.findall(log_path.read_text())
        resumed = _copy_until_backfilled(c)
        first = resumed[0]["buckets"][0]
        # nothing committed before the kill was copied again
        assert first["copied"] + len(before) <= len(src_versions(src, versioned)) + writer.ops, (first, len(before))
        assert first["skipped"] >= len(before), (first, len(before))
        _verified(c, writer, src, gw)
        cut_over_under_writes(c, writer, src, gw)
        rolled_back_under_writes(c, writer, src, 15)
        _copy_until_backfilled(c)
        _verified(c, writer, src, gw)
        cut_over_under_writes(c, writer, src, gw)
        with writer.paused():
            assert migrate(c, "detach", BUCKET)["buckets"][0]["state"] == "detached"
            at_detach = dict(writer.model)
            assert status(c)["journal"] == 0
            mine, theirs = snapshot(gw, BUCKET), snapshot(src, BUCKET)
            assert mine == theirs, _differences(mine, theirs)
        writer.writes_more(10, "writes after detach")
    finally:
        writer.stop()
    assert not writer.errors, writer.errors
    holds(gw, writer.model, "Pocket alone after detach")
    holds(src, at_detach, "source left as it was at detach")


def src_versions(src, versioned: bool) -> list:
    if not versioned:
        return [o for p in src.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in p.get("Contents", ())]
    return [v for p in src.get_paginator("list_object_versions").paginate(Bucket=BUCKET)
            for v in p.get("Versions", ()) + p.get("DeleteMarkers", ())]


def _differences(mine: dict, theirs: dict) -> list:
    """What differs between Pocket's snapshot and the source's, field by field."""
    out = []
    for v in sorted(set(mine["versions"]) | set(theirs["versions"])):
        a, b = mine["versions"].get(v), theirs["versions"].get(v)
        if a is None or b is None:
            out.append((v, "only in Pocket" if b is None else "only at the source"))
        elif a != b:
            out.append((v, {f: (a.get(f), b.get(f)) for f in set(a) | set(b) if a.get(f) != b.get(f)}))
    if mine["order"] != theirs["order"]:
        out.append(("order", [(k, mine["order"].get(k), theirs["order"][k]) for k in theirs["order"]
                               if mine["order"].get(k) != theirs["order"][k]]))
    return out[:20]
