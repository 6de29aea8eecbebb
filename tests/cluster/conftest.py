import os
import uuid

import pytest

from .harness import ProcCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One 6-node EC 4+2 cluster shared by a module's tests that don't break it."""
    c = ProcCluster(str(tmp_path_factory.mktemp("cluster"))).start()
    yield c
    c.close()


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own, for tests that kill, stop or corrupt things."""
    c = ProcCluster(str(tmp_path / "cluster")).start()
    yield c
    c.close()


@pytest.fixture
def bucket(cluster):
    name = f"t-{uuid.uuid4().hex[:12]}"
    cluster.client().create_bucket(Bucket=name)
    return name


def payload(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes."""
    block = os.urandom(min(size, 1 << 20)) if size else b""
    out = bytearray()
    while len(out) < size:
        out += block
    return bytes(out[:size])
