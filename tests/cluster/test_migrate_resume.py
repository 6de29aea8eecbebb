"""Backfill survives SIGKILL (the restart continues and copies nothing twice) and is
shared by several `pocket migrate copy` processes through leased key ranges."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from .harness import REPO
from .migrate_data import snapshot
from .sources import pocket_migrate, start_seaweedfs

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)

COUNT = 150
COPIED = re.compile(r"copied (\S+)/(.+) version (\S+) \(")
HANDED = re.compile(r"handing (\S+)/(.+) version (\S+) to the gateway")


@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    with start_seaweedfs(str(tmp_path_factory.mktemp("weed"))) as source:
        s3, rnd = source.client(), random.Random(3)
        s3.create_bucket(Bucket="many")
        for i in range(COUNT):
            s3.put_object(Bucket="many", Key=f"k{i:04d}", Body=rnd.randbytes(rnd.randint(20_000, 120_000)))
        yield source


def _copy(cluster, source, log_path, *extra) -> subprocess.Popen:
    """`pocket -v migrate copy many`: -v logs each version as it is committed."""
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", "cli", "-v", "migrate", "copy", "many", "--config", cluster.config,
                             "--source-endpoint", source.endpoint, "--json", *extra], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=log, text=True, env={**os.environ, **source.credentials_env(), "PYTHONUNBUFFERED": "1"})


def _copied(log_path, pattern=COPIED) -> list[str]:
    with open(log_path) as f:
        return [m.group(2) for m in pattern.finditer(f.read())]


def _in_pocket(cluster) -> set[str]:
    keys = set()
    for page in cluster.client().get_paginator("list_objects_v2").paginate(Bucket="many"):
        keys |= {o["Key"] for o in page.get("Contents", ())}
    return keys


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def test_copy_killed_midway_resumes_and_copies_nothing_twice(weed, embedded, tmp_path):
    first = _copy(embedded, weed, tmp_path / "first.log", "--concurrency", "2", "--rate", "1MB")
    try:
        _wait(lambda: embedded.client().list_buckets()["Buckets"] and len(_in_pocket(embedded)) >= 20, 240,
              "the first copy committed nothing")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    before = _in_pocket(embedded)
    assert 20 <= len(before) < COUNT, "killed too late to test a resume"
    assert set(_copied(tmp_path / "first.log")) <= before
    second = _copy(embedded, weed, tmp_path / "second.log", "--concurrency", "4")
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, open(tmp_path / "second.log").read()[-3000:]
    again = _copied(tmp_path / "second.log")
    assert not set(again) & before, "a version committed before the kill was copied again"
    # what the killed copy had handed to the running gateway (storage/migrate/gateway_copy.py)
    # may have been committed by it just after `before` was listed
    late = set(_copied(tmp_path / "first.log", HANDED)) - before
    assert len(again) == len(set(again)) and set(again) | before <= _in_pocket(embedded) <= set(again) | before | late
    assert len(_in_pocket(embedded)) == COUNT
    assert snapshot(embedded.client(), "many") == snapshot(weed.client(), "many")


def test_two_workers_share_the_ranges(weed, embedded, tmp_path):
    """Two copy commands, one process each (two machines), share the bucket's two ranges.

    One process each: a command's own forked workers would take both ranges at once, and
    the other command, started a moment later under load, would find none. The rate keeps
    the first range in hand ~14 s before its holder may lease ahead: the window in which
    the other command starts and leases the second."""
    pocket_migrate(embedded, weed, "plan", "many", "--json")        # the inventory cuts the bucket into ranges
    workers = [_copy(embedded, weed, tmp_path / f"w{i}.log", "--workers", "1", "--concurrency", "2", "--rate", "500KB")
               for i in range(2)]
    for w in workers:
        w.communicate(timeout=300)
        assert w.returncode == 0
    copied = [_copied(tmp_path / f"w{i}.log") for i in range(2)]
    assert all(copied), "one worker found no range to lease"
    assert not set(copied[0]) & set(copied[1])
    assert sorted(copied[0] + copied[1]) == sorted(_in_pocket(embedded)) and len(_in_pocket(embedded)) == COUNT


def test_one_copy_command_forks_workers_that_share_the_bucket(weed, embedded, tmp_path):
    """No plan first: the command lists the source to cut ranges, and its two processes
    lease them like two machines would; each copies a share, none a version twice."""
    copy = _copy(embedded, weed, tmp_path / "copy.log", "--workers", "2", "--concurrency", "4")
    out, _ = copy.communicate(timeout=300)
    assert copy.returncode == 0, open(tmp_path / "copy.log").read()[-3000:]
    report = json.loads(out)
    assert report["ok"] and report["buckets"][0]["copied"] == COUNT
    assert len(report["workers"]) == 2 and all(w["copied"] for w in report["workers"]), report["workers"]
    assert sum(w["copied"] for w in report["workers"]) == COUNT
    copied = _copied(tmp_path / "copy.log")
    assert len(copied) == len(set(copied)) == COUNT
    assert snapshot(embedded.client(), "many") == snapshot(weed.client(), "many")


def test_gateway_killed_mid_copy(weed, embedded, tmp_path):
    """The copy writes through its own view of the cluster: a gateway SIGKILLed meanwhile
    loses nothing, and once it is back it serves every copied version."""
    copy = _copy(embedded, weed, tmp_path / "copy.log", "--concurrency", "2", "--rate", "2MB")
    try:
        _wait(lambda: embedded.client().list_buckets()["Buckets"] and len(_in_pocket(embedded)) >= 10, 240,
              "the copy committed nothing")
        embedded.signal("gateway")
        out, _ = copy.communicate(timeout=300)
    finally:
        if copy.poll() is None:
            copy.kill()
            copy.wait()
    assert copy.returncode == 0, open(tmp_path / "copy.log").read()[-3000:]
    embedded.start_gateway()
    assert len(_in_pocket(embedded)) == COUNT
    assert snapshot(embedded.client(), "many") == snapshot(weed.client(), "many")


def test_copy_killed_inside_a_multipart_object_leaves_no_upload_behind(weed, embedded, tmp_path):
    s3, rnd = weed.client(), random.Random(4)
    s3.create_bucket(Bucket="big")
    up = s3.create_multipart_upload(Bucket="big", Key="movie.mkv")
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="big", Key="movie.mkv", UploadId=up["UploadId"],
                                                      PartNumber=n, Body=rnd.randbytes(size))["ETag"]}
             for n, size in enumerate(((5 << 20) + 3, (5 << 20) + 5, 777), 1)]
    s3.complete_multipart_upload(Bucket="big", Key="movie.mkv", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    pocket_s3 = embedded.client()
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen([sys.executable, "-m", "cli", "migrate", "copy", "big", "--rate", "1MB", "--config",
                              embedded.config, "--source-endpoint", weed.endpoint], cwd=REPO, stdout=log, stderr=log,
                             env={**os.environ, **weed.credentials_env()})
    try:
        _wait(lambda: pocket_s3.list_buckets()["Buckets"] and
              pocket_s3.list_multipart_uploads(Bucket="big").get("Uploads"), 240, "the copy began no upload")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert pocket_s3.list_multipart_uploads(Bucket="big").get("Uploads")      # left mid-object
    _, report = pocket_migrate(embedded, weed, "copy", "big", "--json")
    assert report["buckets"][0]["copied"] == 1
    assert not pocket_s3.list_multipart_uploads(Bucket="big").get("Uploads")
    assert snapshot(pocket_s3, "big") == snapshot(s3, "big")
