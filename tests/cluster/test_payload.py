"""The test bodies themselves: if two segments of a test object were equal, a GET that
returned the wrong segment would still pass every round-trip test."""
from storage.config import StorageConfig

from .conftest import payload

SEG = StorageConfig().segment_size


def test_no_two_segments_of_a_test_object_are_equal():
    data = payload(8 * SEG + 99)
    segments = [data[i:i + SEG] for i in range(0, len(data), SEG)]
    assert len(set(segments)) == len(segments) == 9


def test_no_window_repeats_at_any_offset():
    """Unique per byte position, not just per segment: a range read off by a few bytes
    (not only by whole segments) must read different bytes."""
    data = payload(4 * SEG)
    windows = {data[i:i + 16] for i in range(0, len(data) - 16, 4093)}
    assert len(windows) == len(range(0, len(data) - 16, 4093))


def test_a_seed_reproduces_and_unseeded_calls_differ():
    assert payload(5000, 7) == payload(5000, 7)
    assert payload(5000, 7) != payload(5000, 8)
    assert payload(5000) != payload(5000)
