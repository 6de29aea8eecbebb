"""Fixtures the unit tests share (the index on each backend: make_index in tests/conftest.py)."""
from __future__ import annotations

import pytest


@pytest.fixture
def ix(make_index):
    """A fresh index with one bucket, "bkt" (the index, version and upload tests' `B`), on each backend."""
    index = make_index()
    index.create_bucket("bkt", {"owner": "me"})
    return index
