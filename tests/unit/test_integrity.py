"""integrity.mac64 of each keyed format must stay what it was when the format was written,
or every archive and pack of that format already on disk would read as corrupt: format 2
is HMAC-SHA256 (computed from precomputed pads), format 3 keyed BLAKE3, each under its
own key derived from the cluster secret."""
from __future__ import annotations

import hashlib
import hmac
import random
import threading

import blake3
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


def _reference(secret: str, data: bytes, seed: int, fmt: int) -> int:
    message = seed.to_bytes(8, "little") + data
    if fmt == integrity.MAC_V2:
        digest = hmac.new(integrity.derive(secret, "data-mac/v2"), message, hashlib.sha256).digest()
    else:
        digest = blake3.blake3(message, key=integrity.derive(secret, "data-mac/v3")).digest()
    return int.from_bytes(digest[:8], "little")


FORMATS = pytest.mark.parametrize("fmt", [integrity.MAC_V2, integrity.MAC_V3])


@FORMATS
def test_mac64_equals_its_reference_for_many_inputs(fmt):
    rng = random.Random(64)
    for secret in ("a" * 40, "another cluster secret that is long enough!"):
        integrity.use_secret(secret)
        for n in [0, 1, 55, 56, 63, 64, 65, 119, 1023, 1024, 1025, 2047, 2048, 4096, 16383, 16384, 100_000] + \
                 [rng.randrange(300_000) for _ in range(200)]:
            data, seed = rng.randbytes(n), rng.randrange(2**64)
            assert integrity.mac64(data, seed, fmt) == _reference(secret, data, seed, fmt)
            assert integrity.mac64(memoryview(data), fmt=fmt) == _reference(secret, data, 0, fmt)
            cut = rng.randrange(n + 1)
            assert integrity.mac64_pieces((data[:cut], memoryview(data)[cut:]), seed, fmt) == \
                _reference(secret, data, seed, fmt)


def test_the_current_mac_is_keyed_blake3_and_formats_differ():
    integrity.use_secret("b" * 40)
    data = random.Random(2).randbytes(5000)
    assert integrity.mac64(data) == _reference("b" * 40, data, 0, integrity.MAC_V3)
    assert integrity.mac64(data, fmt=integrity.MAC_V2) != integrity.mac64(data, fmt=integrity.MAC_V3)
    with pytest.raises(ValueError):
        integrity.mac64(data, fmt=1)


@FORMATS
def test_mac64_follows_a_new_secret(fmt):
    data = random.Random(1).randbytes(4096)
    integrity.use_secret("x" * 40)
    first = integrity.mac64(data, fmt=fmt)
    integrity.use_secret("y" * 40)
    assert integrity.mac64(data, fmt=fmt) != first
    assert integrity.mac64(data, fmt=fmt) == _reference("y" * 40, data, 0, fmt)


@FORMATS
def test_mac64_from_many_threads_at_once(fmt):
    """Executor threads compute MACs concurrently, also while the pads are first made."""
    integrity.use_secret("z" * 40)
    bodies = [random.Random(i).randbytes(1000 + 37 * i) for i in range(32)]
    wrong: list[int] = []

    def work(i: int) -> None:
        for _ in range(50):
            if integrity.mac64(bodies[i], i, fmt) != _reference("z" * 40, bodies[i], i, fmt):
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
