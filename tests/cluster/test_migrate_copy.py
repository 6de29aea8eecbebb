"""`pocket migrate copy` from real S3 servers: every version copied faithfully (bytes,
headers, metadata, tags, Last-Modified, ETag, version ids and their order), resumable
after SIGKILL with nothing copied twice, shared by several workers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .harness import REPO, ProcCluster
from .migrate_data import seed_plain, seed_versioned, snapshot
from .sources import pocket_migrate, start_seaweedfs


@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    source = start_seaweedfs(str(tmp_path_factory.mktemp("weed")))
    try:
        s3 = source.client()
        seed_plain(s3, "plain")
        seed_versioned(s3, "history")
        yield source
    finally:
        source.close()


@pytest.fixture
def pocket(tmp_path):
    c = ProcCluster(str(tmp_path / "pocket"), embedded=True).start()
    yield c
    c.close()


def test_copy_is_faithful_and_a_second_pass_copies_nothing(weed, pocket):
    _, report = pocket_migrate(pocket, weed, "copy", "plain", "--json")
    assert report["ok"] and report["buckets"][0]["copied"] == 7 and report["buckets"][0]["errors"] == 0
    _, report = pocket_migrate(pocket, weed, "copy", "history", "--json")
    assert report["ok"] and report["buckets"][0]["copied"] == 8   # 6 versions, 2 delete markers
    for bucket in ("plain", "history"):
        assert snapshot(pocket.client(), bucket) == snapshot(weed.client(), bucket)
    # a second pass finds everything equal
    _, again = pocket_migrate(pocket, weed, "copy", "plain", "history", "--json")
    assert [(b["copied"], b["skipped"]) for b in again["buckets"]] == [(0, 0), (0, 0)]
