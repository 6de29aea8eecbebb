"""A bucket of large multipart objects is shared by a copy's worker processes (one per core
by default, even beside a running gateway), each object's parts copied with the source's
boundaries; a worker SIGKILLed midway loses nothing, and the next pass finishes the bucket
without copying a committed version twice."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter

import pytest

from storage.migrate import ranges

from .harness import REPO, wait_for
from .migrate_data import put_multipart, snapshot
from .sources import pocket_migrate, start_seaweedfs

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)

MIB = 1 << 20
# four objects of four parts over 5 MiB (each part streams in a slot of its own: an object
# fills half of a process's copier.LARGE_STREAMS), two objects to a range of RANGE_BYTES
OBJECTS = {f"big/{i}": [5 * MIB + 4096 * i + n for n in (1, 7, 3)] + [MIB + 1000 + i] for i in range(4)}
COPIED = re.compile(r"copied big/(.+) version (\S+) \(")     # bucket/key: the bucket is "big"


@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    with start_seaweedfs(str(tmp_path_factory.mktemp("weed"))) as source:
        s3, rnd = source.client(), random.Random(12)
        s3.create_bucket(Bucket="big")
        for key, parts in OBJECTS.items():
            put_multipart(s3, "big", key, [rnd.randbytes(size) for size in parts])
        yield source


def test_the_bucket_is_cut_so_that_two_workers_each_have_a_range():
    sizes = {k: sum(p) for k, p in OBJECTS.items()}
    assert len(ranges.range_bounds(list(sizes), sizes=sizes)) == 2


def test_workers_share_a_bucket_of_large_objects_beside_the_gateway(weed, embedded):
    """No --workers: the gateway would take small objects, but these are all the copy's
    own work, so it runs a process per core; the bytes, multipart ETags and Last-Modified
    are the source's whichever process copied an object."""
    _, report = pocket_migrate(embedded, weed, "copy", "big", "--rate", "24MB", "--json")
    cores = max(1, min(4, os.cpu_count() or 1))
    assert report["ok"] and report["buckets"][0]["copied"] == len(OBJECTS)
    assert len(report["workers"]) == cores, report["workers"]
    if cores > 1:
        assert all(w["copied"] for w in report["workers"]), report["workers"]
    pocket, source = snapshot(embedded.client(), "big"), snapshot(weed.client(), "big")
    assert pocket == source
    assert all(v["etag"].endswith('-4"') for v in pocket["versions"].values())


def test_a_forked_worker_imports_nothing_the_parent_had_not_imported(weed, embedded):
    """The write path is imported once, before the fork (workers._share_imports), and each
    worker shares it: imported again in a worker, after it was told to go, it cost that
    worker CPU at the start while the parent was copying already. `-X importtime` reports
    every import of every process on stderr, so a module imported by both shows twice."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli", "migrate", "copy", "big",
                          "--target", "big-imports", "--workers", "2", "--json", "--config", embedded.config,
                          "--source-endpoint", weed.endpoint], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, **weed.credentials_env()}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["ok"] and report["buckets"][0]["copied"] == len(OBJECTS)
    assert len(report["workers"]) == 2 and all(w["copied"] for w in report["workers"]), report["workers"]
    imported = Counter(line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines()
                       if line.startswith("import time:") and "|" in line)
    assert imported["storage.objects.build"], "the write path was not imported at all"
    twice = sorted(m for m, n in imported.items() if n > 1 and m.startswith("storage."))
    assert not twice, f"imported again in a forked worker: {twice}"
    assert snapshot(embedded.client(), "big-imports") == snapshot(weed.client(), "big")


def test_a_worker_killed_mid_object_loses_nothing_and_the_next_pass_finishes(weed, embedded, tmp_path):
    log_path = tmp_path / "first.log"
    first = subprocess.Popen([sys.executable, "-m", "cli", "-v", "migrate", "copy", "big", "--workers", "2",
                              "--rate", "16MB", "--json", "--config", embedded.config, "--source-endpoint",
                              weed.endpoint], cwd=REPO, stdout=subprocess.PIPE, stderr=open(log_path, "w"),
                             text=True, env={**os.environ, **weed.credentials_env()})
    s3 = embedded.client()
    # both workers are inside an object (each holds a range of two)
    out = _kill_its_worker(first, "both workers inside an object", lambda: _open_uploads(s3) >= 3)
    # the parent takes the dead worker's range over at once (same machine, process gone),
    # aborts its half-copied uploads, and says that a worker failed
    assert first.returncode == 1, log_path.read_text()[-3000:]
    assert "without a report" in out
    log = log_path.read_text()
    assert "took back the ranges of" in log and "left by an interrupted copy" in log, log[-3000:]
    before = _in_pocket(s3)
    _, report = pocket_migrate(embedded, weed, "copy", "big", "--json")
    again = report["buckets"][0]
    assert report["ok"] and again["copied"] + again["skipped"] == len(OBJECTS)
    assert again["copied"] == len(OBJECTS) - len(before)
    copied = COPIED.findall(log)
    keys = [k for k, _ in copied]
    assert len(keys) == len(set(keys)) and set(keys) <= before, "a version was committed twice"
    assert not s3.list_multipart_uploads(Bucket="big").get("Uploads"), "the killed worker's upload was left"
    assert snapshot(s3, "big") == snapshot(weed.client(), "big")


def _kill_its_worker(command: subprocess.Popen, what: str, when) -> str:
    """SIGKILL the one worker `command` forked once `when()` holds; what it then printed."""
    try:
        wait_for(what, when, timeout=120, every=0.05)
        children = _children(command.pid)
        assert len(children) == 1, children
        os.kill(children[0], signal.SIGKILL)
        return command.communicate(timeout=300)[0]
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()


def _open_uploads(s3) -> int:
    if not s3.list_buckets()["Buckets"]:
        return 0
    return len(s3.list_multipart_uploads(Bucket="big").get("Uploads", ()))


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def _in_pocket(s3) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket="big").get("Contents", ())}


def test_a_verify_worker_killed_fails_the_verify_and_records_nothing_clean(weed, embedded, tmp_path):
    """`verify --deep` over two processes: the forked one SIGKILLed mid-read means its share
    was never compared, so the command fails, says to run it again, and leaves no clean
    verify on record for cutover to trust; the rerun compares everything."""
    from .source_meter import SourceMeter
    pocket_migrate(embedded, weed, "copy", "big", "--json")
    pocket_migrate(embedded, weed, "enable", "big", "--source-addressing", "path", "--json")
    meter = SourceMeter(weed.endpoint, large=MIB, pace=0.05)     # ~1.3 MB/s a body: reads stay in flight
    log_path = tmp_path / "verify.log"
    try:
        first = subprocess.Popen([sys.executable, "-m", "cli", "migrate", "verify", "big", "--deep", "--workers", "2",
                                  "--json", "--config", embedded.config, "--source-endpoint", meter.endpoint],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True,
                                 env={**os.environ, **weed.credentials_env()})
        out = _kill_its_worker(first, "both processes reading a source body", lambda: meter.streaming >= 2)
    finally:
        meter.close()
    said = out + log_path.read_text()
    assert first.returncode == 1, said[-3000:]
    assert "its share was not compared: run verify again" in said, said[-3000:]
    assert "Traceback" not in said, said[-3000:]
    _, status = pocket_migrate(embedded, weed, "status", "big", "--json")
    assert status["buckets"][0]["last_verify"] is None, status
    code, refused = pocket_migrate(embedded, weed, "cutover", "big", ok=(1, 2))
    assert "verif" in refused, refused
    _, report = pocket_migrate(embedded, weed, "verify", "big", "--deep", "--workers", "2", "--json")
    bucket = report["buckets"][0]
    assert report["clean"] and bucket["checked"] == bucket["deep_read"] == len(OBJECTS), report
    _, status = pocket_migrate(embedded, weed, "status", "big", "--json")
    assert status["buckets"][0]["last_verify"]["clean"] and status["buckets"][0]["last_verify"]["deep"], status
