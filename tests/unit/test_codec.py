"""Unit tests for storage.codec: the erasure coder and storage-policy parsing."""
from __future__ import annotations

import itertools
import random

import pytest
import zfec

from storage import codec_isal
from storage.codec import Codec
from storage.policy_spec import parse_policy

MiB = 1 << 20


def _data(length: int, seed: int = 0) -> bytes:
    return random.Random(seed * 1_000_003 + length).randbytes(length)


def _lengths(k: int, big: int) -> list[int]:
    """1, k-1, k, 1000, a big length, and lengths not divisible by k."""
    out = {1, k - 1, k, 1000, big, 7 * k + 1, 1000 * k + k - 1}
    return sorted(out)


POLICIES = [
    # (k, m, "big" length); 10+4 has 1471 loss patterns, so it gets a smaller big length.
    (4, 2, MiB + 3),
    (6, 3, MiB + 3),
    (10, 4, 64 * 1024 + 3),
    (1, 2, MiB + 3),  # replica:3
]


def _cases():
    for k, m, big in POLICIES:
        for length in _lengths(k, big):
            yield pytest.param(k, m, length, id=f"{k}+{m}-len{length}")


@pytest.mark.parametrize("k,m,length", list(_cases()))
def test_every_loss_pattern_up_to_m_decodes_exactly(k, m, length):
    codec = Codec(k, m)
    segment = _data(length, k * 31 + m)
    blocks = codec.encode(segment)
    assert len(blocks) == k + m
    size = codec.block_size(length)
    assert all(len(b) == size for b in blocks), "every fragment block has the same padded size"
    if k > 1:
        # Data blocks are plain slices of the (zero-padded) segment.
        padded = segment + b"\0" * (size * k - length)
        assert b"".join(blocks[:k]) == padded
    n = k + m
    patterns = 0
    for lost in range(m + 1):
        for gone in itertools.combinations(range(n), lost):
            rest = {i: blocks[i] for i in range(n) if i not in gone}
            got = codec.decode(rest, length)
            assert got == segment, f"decode failed with blocks {gone} lost"
            patterns += 1
    assert patterns == sum(len(list(itertools.combinations(range(n), r))) for r in range(m + 1))


@pytest.mark.parametrize("k,m,length", [(4, 2, MiB + 3), (4, 2, 1), (6, 3, 7 * 6 + 1), (10, 4, 64 * 1024 + 3),
                                          (1, 2, 1000)])
def test_rebuild_gives_exactly_the_lost_blocks_encode_made_for_every_loss_pattern(k, m, length):
    """What the repairer writes: the lost blocks themselves, padding included, from the
    first k survivors (as the reader hands them over), for every pattern of up to m losses."""
    codec = Codec(k, m)
    blocks = codec.encode(_data(length, k + m))
    n = k + m
    for lost in range(1, m + 1):
        for gone in itertools.combinations(range(n), lost):
            survivors = [i for i in range(n) if i not in gone][:k]
            got = codec.rebuild({i: blocks[i] for i in survivors}, set(gone))
            assert got == {i: blocks[i] for i in gone}, f"rebuild of {gone} from {survivors}"
    with pytest.raises(ValueError):
        codec.rebuild({i: blocks[i] for i in range(k - 1)}, {n - 1})


@pytest.mark.parametrize("k,m", [(4, 2), (6, 3), (10, 4), (1, 2)])
def test_decode_from_exactly_k_blocks_given_in_any_order(k, m):
    codec = Codec(k, m)
    segment = _data(5000, 7)
    blocks = codec.encode(segment)
    keep = list(range(k + m))[m:]  # drop the first m (some data blocks), keep parity
    random.Random(3).shuffle(keep)
    assert codec.decode({i: blocks[i] for i in keep}, len(segment)) == segment


@pytest.mark.parametrize("k,m", [(4, 2), (6, 3), (10, 4), (1, 2)])
def test_decode_with_fewer_than_k_blocks_raises(k, m):
    codec = Codec(k, m)
    segment = _data(4096, 1)
    blocks = codec.encode(segment)
    for have in range(k):
        for keep in itertools.islice(itertools.combinations(range(k + m), have), 20):
            with pytest.raises(ValueError):
                codec.decode({i: blocks[i] for i in keep}, len(segment))


def test_replica_blocks_are_full_copies():
    codec = Codec(1, 2)
    segment = _data(12345, 2)
    blocks = codec.encode(segment)
    assert blocks == [segment] * 3
    for i in range(3):
        assert codec.decode({i: blocks[i]}, len(segment)) == segment


def test_block_size_is_ceiling_of_length_over_k():
    codec = Codec(4, 2)
    assert [codec.block_size(n) for n in (0, 1, 3, 4, 5, 8, 9)] == [0, 1, 1, 1, 2, 2, 3]


def test_corrupt_parity_block_gives_wrong_bytes_not_silent_success():
    """The codec does not verify; a caller must checksum blocks (records do)."""
    codec = Codec(4, 2)
    segment = _data(4000, 9)
    blocks = codec.encode(segment)
    bad = bytearray(blocks[4])
    bad[0] ^= 0xFF
    got = codec.decode({1: blocks[1], 2: blocks[2], 3: blocks[3], 4: bytes(bad)}, len(segment))
    assert got != segment


@pytest.mark.parametrize("k,m", [(0, 2), (-1, 2), (4, -1), (200, 57)])
def test_invalid_codec_shapes_raise(k, m):
    with pytest.raises(ValueError):
        Codec(k, m)


@pytest.mark.parametrize("spec,want", [
    ("ec:4+2", (4, 2)),
    ("ec:6+3", (6, 3)),
    ("ec:10+4", (10, 4)),
    ("ec:1+0", (1, 0)),
    ("replica:3", (1, 2)),
    ("replica:1", (1, 0)),
])
def test_parse_policy_good_specs(spec, want):
    assert parse_policy(spec) == want
    k, m = want
    Codec(k, m)  # every accepted spec is usable


@pytest.mark.parametrize("spec", [
    "", "ec", "ec:", "ec:4", "ec:4+", "ec:+2", "ec:4+2+1", "ec:a+b", "ec:4-2",
    "replica:", "replica:x", "raid:5", "4+2", "EC:4+2",
    # parse but describe no usable code: must be refused up front, not at first PUT
    "ec:0+2", "ec:4+-1", "replica:0", "replica:-1", "ec:250+10",
])
def test_parse_policy_bad_specs_raise_with_clear_message(spec):
    with pytest.raises(ValueError) as e:
        parse_policy(spec)
    assert "policy" in str(e.value)


def test_isal_is_what_this_install_uses():
    """pyeclib (a dependency) ships ISA-L: a CI run that silently fell back to zfec would
    test and measure the slow kernel only."""
    assert codec_isal.available()
    assert Codec(4, 2)._isal and not Codec(4, 2, kernel="zfec")._isal


KERNEL_CASES = [(2, 1), (3, 2), (4, 2), (5, 5), (6, 3), (8, 4), (10, 4), (12, 4), (17, 3)]


@pytest.mark.parametrize("k,m", KERNEL_CASES)
def test_isal_makes_byte_for_byte_the_blocks_zfec_makes(k, m):
    """Archives written by either kernel must read and repair with the other: the parity
    of every segment equals zfec's own, and each decodes what the other encoded."""
    rng = random.Random(k * 100 + m)
    isal, slow = Codec(k, m, kernel="isal"), Codec(k, m, kernel="zfec")
    for length in (1, k - 1 or 1, 4096 * k + 3, 65_537, 300_001):
        segment = rng.randbytes(length)
        size = slow.block_size(length)
        padded = segment + bytes(size * k - length)
        data = [padded[i * size:(i + 1) * size] for i in range(k)]
        reference = data + zfec.Encoder(k, k + m).encode(data, tuple(range(k, k + m)))
        assert [bytes(b) for b in isal.encode(segment)] == reference
        assert [bytes(b) for b in slow.encode(segment)] == reference
        for _ in range(6):
            have = rng.sample(range(k + m), k)
            blocks = {i: reference[i] for i in have}
            assert isal.decode(dict(blocks), length) == segment == slow.decode(dict(blocks), length)
            wanted = rng.sample(range(k + m), rng.randint(1, k + m))
            rebuilt = isal.rebuild(dict(blocks), wanted)
            assert {i: bytes(rebuilt[i]) for i in wanted} == {i: reference[i] for i in wanted}


def test_isal_reads_blocks_given_as_views_of_larger_buffers():
    """Blocks straight out of a read window are memoryviews at an offset, read-only or not."""
    k, m = 4, 2
    c = Codec(k, m, kernel="isal")
    segment = random.Random(9).randbytes(MiB + 5)
    blocks = [bytes(b) for b in c.encode(segment)]
    window = b"x" * 7 + b"".join(blocks)
    size = len(blocks[0])
    views = {i: memoryview(window)[7 + i * size:7 + (i + 1) * size] for i in range(k + m)}
    assert c.decode({i: views[i] for i in (1, 3, 4, 5)}, len(segment)) == segment
    writable = bytearray(window)
    wviews = {i: memoryview(writable)[7 + i * size:7 + (i + 1) * size] for i in (0, 2, 4, 5)}
    assert c.decode(wviews, len(segment)) == segment
    assert bytes(c.rebuild(wviews, [1])[1]) == blocks[1]
    # a view with a stride has no one address: read from a copy, same bytes
    spread = bytes(b for pair in zip(blocks[3], bytes(size)) for b in pair)
    mixed = {0: views[0], 2: views[2], 3: memoryview(spread)[::2], 5: views[5]}
    assert not mixed[3].contiguous
    assert bytes(c.rebuild(mixed, [1, 4])[4]) == blocks[4] and bytes(c.rebuild(mixed, [1])[1]) == blocks[1]
