"""A disk's quota (storage/node/quota.py): the filesystem's free space is remembered for a
moment to spare a statvfs per small write, but never near full, where every write that
may be refused asks the filesystem again."""
from __future__ import annotations

import errno
import shutil
from collections import namedtuple

import pytest

from storage.node import quota as quota_mod
from storage.node.quota import RECORD_RESERVE, Quota

Usage = namedtuple("Usage", "total used free")


class FakeFs:
    """What statvfs says, and how often it was asked."""

    def __init__(self, free: int):
        self.free, self.asked = free, 0

    def disk_usage(self, path):
        self.asked += 1
        return Usage(10 * self.free, 0, self.free)


@pytest.fixture
def fs(monkeypatch):
    fake = FakeFs(free=quota_mod.FREE_MARGIN * 4)
    monkeypatch.setattr(shutil, "disk_usage", fake.disk_usage)
    return fake


def test_far_from_full_the_free_space_is_asked_once_per_moment(tmp_path, fs):
    q = Quota("d1", str(tmp_path), 0, lambda: 0)
    for _ in range(50):
        q.take(4096, "archive")
    assert fs.asked == 1
    assert q.used() == 50 * 4096


def test_what_was_taken_since_counts_against_the_remembered_figure(tmp_path, fs):
    q = Quota("d1", str(tmp_path), 0, lambda: 0)
    q.take(1, "archive")
    big = fs.free - quota_mod.FREE_MARGIN   # leaves the estimate at the margin: must ask again
    q.take(big, "archive")
    assert fs.asked == 2


def test_near_full_every_write_asks_and_the_reserve_is_kept(tmp_path, fs):
    fs.free = RECORD_RESERVE + 3 * 4096
    q = Quota("d1", str(tmp_path), 0, lambda: 0)
    q.take(4096, "archive")
    q.take(4096, "archive")
    assert fs.asked == 2
    fs.free = RECORD_RESERVE + 100   # someone else filled the filesystem meanwhile
    with pytest.raises(OSError) as e:
        q.take(4096, "archive")
    assert e.value.errno == errno.ENOSPC
    assert fs.asked == 3
    q.take(4096, "record", refuse=False)   # tombstones are never refused, nor asked about
    assert fs.asked == 3


def test_a_stale_figure_is_asked_again(tmp_path, fs, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(quota_mod.time, "monotonic", lambda: now[0])
    q = Quota("d1", str(tmp_path), 0, lambda: 0)
    q.take(4096, "archive")
    now[0] += quota_mod.FREE_TTL + 0.01
    q.take(4096, "archive")
    assert fs.asked == 2
