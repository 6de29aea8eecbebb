import itertools
import random
import uuid

import pytest

from . import forkserver
from .harness import QUIET, ProcCluster
from .migrate_world import STARTERS
from .sources import SourceLink


class _SharedCluster:
    """The default cluster of one pytest(-xdist) worker, shared by every file whose tests only
    need a running cluster and a bucket of their own (the API tests): a cluster start is
    seconds of CPU on a loaded box, and a dozen files paid one each.

    Started by the first test that asks for it and stopped as soon as the worker moves on
    to a file that does not use it, since an idle cluster still costs CPU (heartbeats,
    scrubbers) for the rest of the run. The files using it run first and one after the
    other (`pytest_collection_modifyitems` below; `make test` keeps that order with
    `--no-loadscope-reorder`), so each worker starts it about once."""

    def __init__(self):
        self.cluster: ProcCluster | None = None

    def get(self, tmp_path_factory) -> ProcCluster:
        if self.cluster is None:
            self.cluster = ProcCluster(str(tmp_path_factory.mktemp("shared-cluster"))).start()
        exited = {name: p.returncode for name, p in self.cluster.procs.items() if p.poll() is not None}
        if exited:
            raise RuntimeError(f"the shared cluster's {exited} exited during an earlier test (log in "
                               f"{self.cluster.root}): a test that stops, kills or reconfigures processes "
                               "must take fresh_cluster or start its own ProcCluster")
        return self.cluster

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


_shared = _SharedCluster()


_shared_files: set[str] = set()   # the test files using it, found at collection


def _file(item) -> str:
    return item.nodeid.split("::")[0]


@pytest.fixture
def cluster(tmp_path_factory):
    """The worker's shared 6-node EC 4+2 cluster (`_SharedCluster`): for tests that do not
    stop, kill, reconfigure or fill it, each in a bucket of its own (`bucket`)."""
    return _shared.get(tmp_path_factory)


@pytest.fixture(scope="session", autouse=True)
def _stop_shared_cluster():
    """No stray processes if the session ends early (an interrupt, -x), and the fork
    servers stopped (and waited for, so their children's CPU counts in the session's)."""
    yield
    _shared.close()
    forkserver.close_all()


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own, for tests that kill, stop or corrupt things."""
    c = ProcCluster(str(tmp_path / "cluster")).start()
    yield c
    c.close()


@pytest.fixture
def embedded(tmp_path):
    """A `pocket up`-shaped cluster of its own: the gateway opens every disk itself."""
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True).start()
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
def six(tmp_path):
    """Six quiet nodes: a six-wide volume has no disk to spare, so a failed disk's slots have
    nowhere to go, and the disk commands and probes act alone."""
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6, sections=QUIET)
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
    for name, value in {**source.credentials_env(), **SourceLink.ENV}.items():   # the gateway's and commands'
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


def pytest_configure(config):
    config.addinivalue_line("markers", "long: a probe file of half a minute or more on CI, dealt to the "
                                       "test workers first (pytest_collection_modifyitems)")


def pytest_collection_modifyitems(config, items):
    """The order pytest-xdist deals files to its workers in (`make test` keeps it): files
    using the shared cluster first and together; then the probes marked `long`, then the
    other probes, then the unit tests, each group by test count, each file's tests in their
    order. A worker takes the next file as it runs out, so the files dealt last decide how
    long the others wait at the end: short unit files, not a probe of a minute (by test count
    alone, the one-test probes came last)."""
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(_file(item), []).append(item)
    _shared_files.update(f for f, its in files.items() if any("cluster" in i.fixturenames for i in its))

    def rank(f: str) -> tuple[int, int]:
        if f in _shared_files:
            return 0, 0
        if any(i.get_closest_marker("long") for i in files[f]):
            return 1, -len(files[f])
        return (3 if f.startswith("tests/unit/") else 2), -len(files[f])
    items[:] = [item for f in sorted(files, key=rank) for item in files[f]]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop the shared cluster when the worker's next test file does not use it (or none is left)."""
    if nextitem is None or _file(nextitem) not in _shared_files:
        _shared.close()
