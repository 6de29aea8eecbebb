"""`verify --deep` compares the source's bytes with Pocket's as they stream in, however each
side cuts them (storage/migrate/deep.py `same_bytes`): a difference anywhere, one byte
more or less on either side, is found; equal bytes in any cut are equal."""
from __future__ import annotations

import asyncio
import random

from storage.migrate.deep import same_bytes

DATA = random.Random(3).randbytes(10_000)


async def _chunks(data: bytes, cuts: list[int]):
    at = 0
    for n in cuts:
        yield data[at:at + n]
        at += n
    if at < len(data):
        yield data[at:]


def _same(a: bytes, a_cuts: list[int], b: bytes, b_cuts: list[int]) -> bool:
    return asyncio.run(same_bytes(_chunks(a, a_cuts), _chunks(b, b_cuts)))


def test_equal_bytes_in_any_cut_are_the_same():
    assert _same(DATA, [1024] * 9, DATA, [])
    assert _same(DATA, [0, 3, 0, 4000, 1], DATA, [2500, 0, 2500, 2500])
    assert _same(b"", [], b"", [0])              # an empty object: no chunk on one side, b"" on the other


def test_a_difference_anywhere_is_found():
    for at in (0, 1023, 1024, 5000, len(DATA) - 1):
        changed = DATA[:at] + bytes([DATA[at] ^ 0x40]) + DATA[at + 1:]
        assert not _same(DATA, [1024] * 9, changed, [777] * 12), at


def test_one_byte_more_or_less_is_a_difference():
    assert not _same(DATA, [1024] * 9, DATA[:-1], [1024] * 9)
    assert not _same(DATA, [], DATA + b"\0", [5000])
    assert not _same(b"", [], b"\0", [])


async def _views(data: bytes, cuts: list[int]):
    """Pocket's side as the read gives it: views into larger buffers (its checked blocks)."""
    at = 0
    for n in cuts:
        yield memoryview(b"\xff" * 7 + data[at:at + n] + b"\xfe" * 5)[7:7 + n]
        at += n


def test_views_are_compared_where_they_lie_in_the_source_chunk():
    blocks = [256] * 39 + [16]                      # 10,000 bytes in blocks, the last one short
    same = asyncio.run(same_bytes(_chunks(DATA, [1024] * 9), _views(DATA, blocks)))
    assert same
    for at in (0, 255, 256, 1023, 1024, 1279, 5120, 9983, 9984, len(DATA) - 1):   # block and chunk edges
        changed = DATA[:at] + bytes([DATA[at] ^ 0x01]) + DATA[at + 1:]
        assert not asyncio.run(same_bytes(_chunks(DATA, [1024] * 9), _views(changed, blocks))), at
        assert not asyncio.run(same_bytes(_chunks(changed, [1000] * 10), _views(DATA, blocks))), at
    assert not asyncio.run(same_bytes(_chunks(DATA, [1024] * 9), _views(DATA[:-16], blocks[:-1])))
    assert not asyncio.run(same_bytes(_chunks(DATA[:-1], [1024] * 9), _views(DATA, blocks)))
