"""The nonces shared by a node's processes (storage/node/shared_replay.py), with real
forked processes: each nonce is admitted once across all of them, a process killed at
any moment wedges no other, and what a dead process admitted stays refused."""
from __future__ import annotations

import os
import signal
import time

from storage.node.shared_replay import SharedReplayCache


def _now() -> int:
    return int(time.time() * 1000)


def _in_children(count: int, work) -> list[bytes]:
    """Run `work(n) -> bytes` in `count` forked processes at once; their outputs."""
    pipes, pids = [], []
    for n in range(count):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                os.write(w, work(n))
            finally:
                os._exit(0)
        os.close(w)
        pipes.append(r)
        pids.append(pid)
    out = []
    for r, pid in zip(pipes, pids):
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        out.append(b"".join(chunks))
    return out


def test_racing_processes_admit_each_nonce_exactly_once():
    cache = SharedReplayCache(slots=1 << 14)
    stamp = _now()
    nonces = [f"race-{i:05d}-{'ab' * 8}" for i in range(3000)]

    def admit_all(n: int) -> bytes:
        order = list(enumerate(nonces))[::1 if n % 2 == 0 else -1]     # meeting from both ends
        return b"".join(b"%d\n" % i for i, x in order if cache.admit(x, stamp) is None)

    admitted = [int(line) for out in _in_children(4, admit_all) for line in out.split()]
    assert sorted(admitted) == list(range(len(nonces)))
    assert cache.admit(nonces[1234], stamp) == "nonce already used (a replayed request)"


def test_a_process_killed_while_admitting_wedges_none_of_the_others():
    cache = SharedReplayCache(slots=1 << 16)
    stamp = _now()
    for round_ in range(5):
        busy, told = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(busy)
            i = 0
            while True:          # admitting (and so holding the lock) when the kill comes, often
                cache.admit(f"victim-{round_}-{i}-{'cd' * 8}", stamp)
                i += 1
                if i == 1 + 50 * round_:     # in its loop, a little further in each round
                    os.write(told, b"x")
        os.close(told)
        assert os.read(busy, 1) == b"x"      # the child is admitting now: kill it there
        os.close(busy)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        started = time.monotonic()
        assert cache.admit(f"survivor-{round_}-{'ef' * 8}", _now() + 1) is None   # newer than any it forgot
        assert time.monotonic() - started < 1.0


def test_what_a_dead_process_admitted_stays_refused():
    cache = SharedReplayCache(slots=1 << 10)
    stamp = _now()
    _in_children(1, lambda _n: b"ok" if cache.admit("admitted-by-the-dead-one-0123", stamp) is None else b"no")
    assert cache.admit("admitted-by-the-dead-one-0123", stamp) == "nonce already used (a replayed request)"


def test_past_its_size_the_table_forgets_and_refuses_older_requests_instead():
    cache = SharedReplayCache(slots=1 << 4)     # half full at 8 nonces: the other table is then cleared
    base = _now()
    for i in range(20):
        assert cache.admit(f"filler-{i:02d}-{'9f' * 8}", base + i) is None
    forgotten = cache.floor
    assert base <= forgotten < base + 20
    assert cache.admit(f"filler-00-{'9f' * 8}", base) is not None       # forgotten, yet refused by the floor
    assert "older than the node's replay memory" in cache.admit("late-but-new-nonce-00", forgotten)
    assert cache.admit("new-nonce-after-floor-0", base + 20) is None


def test_requests_signed_before_the_node_started_are_refused():
    before = _now() - 5
    cache = SharedReplayCache(slots=1 << 4)
    assert "older than the node's replay memory" in cache.admit("signed-before-start-00", before)
