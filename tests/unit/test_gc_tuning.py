"""A serving process's collector (storage/gc_tuning.py): start-up objects are frozen and
young collections are rarer, but a reference cycle made while serving is still freed
without anyone calling gc.collect()."""
from __future__ import annotations

import gc
import weakref

import pytest

from storage import gc_tuning


@pytest.fixture
def tuned():
    before = gc.get_threshold()
    gc_tuning.tune()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


class Node:
    def __init__(self):
        self.me = self   # a cycle: reference counting alone never frees it


def test_cycles_made_while_serving_are_still_collected(tuned):
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == gc_tuning.YOUNG
    freed = []
    node = Node()
    weakref.finalize(node, freed.append, True)
    del node
    assert freed == []
    keep = [[] for _ in range(gc_tuning.YOUNG * 3)]   # a request's worth of allocations, many times over
    assert freed == [True]
    del keep
