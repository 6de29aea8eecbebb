import itertools
import random
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


_unseeded = itertools.count()


def payload(size: int, seed: int | str | None = None) -> bytes:
    """Bytes unique at every offset, so a GET of the wrong segment, a range one segment
    off or a repair of the wrong segment reads different bytes and fails the test.
    Seeded (a failure reproduces); without a seed, each call draws the next one of this
    run, so two objects of a test never hold the same bytes either."""
    if seed is None:
        seed = f"unseeded-{next(_unseeded)}"
    return random.Random(seed).randbytes(size)
