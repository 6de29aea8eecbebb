"""Fixtures the unit tests share."""
from __future__ import annotations

import pytest

from storage.index.lmdb_index import Index


@pytest.fixture
def ix(tmp_path):
    """A fresh index with one bucket, "bkt" (the index, version and upload tests' `B`)."""
    index = Index(str(tmp_path / "idx"))
    index.create_bucket("bkt", {"owner": "me"})
    yield index
    index.close()
