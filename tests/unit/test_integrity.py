"""integrity.mac64 reuses precomputed HMAC pads; its output must stay HMAC-SHA256, or every
format 2 archive and pack already on disk would read as corrupt."""
from __future__ import annotations

import hashlib
import hmac
import random
import threading

import pytest

from storage import integrity


@pytest.fixture(autouse=True)
def _key_as_it_was():
    """These tests switch the process's data key; the next test file in this xdist worker
    (a cluster test reading packs with the cluster's key) must find the one it set."""
    saved = dict(integrity._keys)
    yield
    integrity._keys.clear()
    integrity._keys.update(saved)
    integrity._pads.clear()


def _reference(key: bytes, data: bytes, seed: int) -> int:
    return int.from_bytes(hmac.new(key, seed.to_bytes(8, "little") + data, hashlib.sha256).digest()[:8], "little")


def test_mac64_equals_hmac_sha256_for_many_inputs():
    rng = random.Random(64)
    for secret in ("a" * 40, "another cluster secret that is long enough!"):
        integrity.use_secret(secret)
        key = integrity.derive(secret, "data-mac/v2")
        for n in [0, 1, 55, 56, 63, 64, 65, 119, 2047, 2048, 4096, 16383, 16384, 100_000] + \
                 [rng.randrange(300_000) for _ in range(200)]:
            data, seed = rng.randbytes(n), rng.randrange(2**64)
            assert integrity.mac64(data, seed) == _reference(key, data, seed)
            assert integrity.mac64(memoryview(data)) == _reference(key, data, 0)


def test_mac64_follows_a_new_secret():
    data = random.Random(1).randbytes(4096)
    integrity.use_secret("x" * 40)
    first = integrity.mac64(data)
    integrity.use_secret("y" * 40)
    assert integrity.mac64(data) != first
    assert integrity.mac64(data) == _reference(integrity.derive("y" * 40, "data-mac/v2"), data, 0)


def test_mac64_from_many_threads_at_once():
    """Executor threads compute MACs concurrently, also while the pads are first made."""
    integrity.use_secret("z" * 40)
    key = integrity.derive("z" * 40, "data-mac/v2")
    bodies = [random.Random(i).randbytes(1000 + 37 * i) for i in range(32)]
    wrong: list[int] = []

    def work(i: int) -> None:
        for _ in range(50):
            if integrity.mac64(bodies[i], i) != _reference(key, bodies[i], i):
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
