import itertools
import random
import uuid

import pytest

from .harness import QUIET, ProcCluster
from .migrate_world import STARTERS
from .sources import SourceLink


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
def quiet_cluster(tmp_path):
    """A cluster whose gateway neither scrubs nor repairs by itself: the commands do."""
    c = ProcCluster(str(tmp_path / "cluster"), sections={**QUIET, "scrub": {"enabled": False, "orphan_grace": 10.0}})
    c.start()
    yield c
    c.close()


@pytest.fixture
def seven(tmp_path):
    """Seven quiet nodes: a six-wide volume keeps its width with one disk failed or drained."""
    c = ProcCluster(str(tmp_path / "cluster"), nodes=7, sections=QUIET)
    c.start()
    yield c
    c.close()


@pytest.fixture(params=STARTERS, ids=lambda starter: starter.__name__.removeprefix("start_"))
def world(request, tmp_path, monkeypatch):
    """The migration probes' world (migrate_world.py), against each source S3 in turn:
    (source, link to it the test can cut, an embedded Pocket cluster)."""
    source = request.param(str(tmp_path / "source"))
    link = SourceLink(int(source.endpoint.rsplit(":", 1)[1]))
    for name, value in source.credentials_env().items():   # the AWS chain of the gateway and commands
        monkeypatch.setenv(name, value)
    cluster = None
    try:
        cluster = ProcCluster(str(tmp_path / "cluster"), embedded=True).start()
        yield source, link, cluster
    finally:
        if cluster:
            cluster.close()
        link.close()
        source.close()


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
