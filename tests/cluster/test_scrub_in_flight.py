"""No acknowledged byte is lost to the scrubber: a PUT whose archives are on the disks while
its commit waits (here for the source of a migrating bucket, which is written first and
answers slowly) outlives many scrub passes and the orphan grace, then answers 200, and its
archives are all still there. Before the gateway told its scrubber which versions it was still writing,
the passes removed those archives as orphans and the PUT still answered 200."""
import os
import re
import signal
import threading
import time

import pytest

from . import sources
from .conftest import payload
from .harness import ProcCluster, pocket, wait_for
from .signing import send, sign
from .sources import SourceLink

GRACE = 10.0        # the least scrub.orphan_grace the config takes
BUCKET = "moving"


@pytest.fixture
def source(tmp_path, monkeypatch):
    src = sources.start_moto(str(tmp_path / "source"))
    for name, value in src.credentials_env().items():   # the gateway reaches the source with these
        monkeypatch.setenv(name, value)
    link = SourceLink(int(src.endpoint.rsplit(":", 1)[1]))
    yield src, link
    os.kill(src.proc.pid, signal.SIGCONT)
    link.close()
    src.close()


def _passes(c: ProcCluster) -> int:
    return len(re.findall(r"scrub pass: ", c.log("gateway")))


def test_a_put_waiting_for_its_commit_survives_scrub_passes_past_the_grace(tmp_path, source):
    src, link = source
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True,
                    sections={"scrub": {"start_delay": 0.2, "collect_interval": 0.5, "orphan_grace": GRACE}}).start()
    try:
        src.client().create_bucket(Bucket=BUCKET)
        pocket(c, "migrate", "enable", BUCKET, "--source-endpoint", link.endpoint, "--source-addressing", "path",
               "--json")
        body = payload(1_500_000, "scrub-in-flight")       # erasure-coded, archives as files
        archives_before = c.archive_files()
        os.kill(src.proc.pid, signal.SIGSTOP)               # the source stops answering for a while
        result: dict = {}
        put = threading.Thread(target=lambda: result.update(answer=send(
            sign("PUT", f"{c.endpoint}/{BUCKET}/slow", {"Content-Length": str(len(body))}), body)))
        put.start()
        def new_archives():
            new = c.archive_files() - archives_before
            return new if len(new) >= 6 else None
        written = wait_for("the PUT's archives on the disks", new_archives, timeout=30, every=0.05)
        stalled_at, passes = time.monotonic(), _passes(c)
        wait_for("the uncommitted version to outlive the grace, with scrub passes after that",
                 lambda: time.monotonic() - stalled_at > GRACE + 1 and _passes(c) >= passes + 3,
                 timeout=60, every=0.2)
        assert put.is_alive(), result                      # still waiting for the source
        os.kill(src.proc.pid, signal.SIGCONT)
        put.join(60)
        status, _, answer = result["answer"]
        assert status == 200, answer
        # (reads of a bucket before cutover come from the source: Pocket's own copy is checked on its disks)
        assert written <= c.archive_files(), "archives of the acknowledged version were removed"
        _, report = pocket(c, "scrub", "--json")
        assert report["missing"] == [] and report["corrupt"] == [], report
        assert c.client().get_object(Bucket=BUCKET, Key="slow")["Body"].read() == body
        assert src.client().get_object(Bucket=BUCKET, Key="slow")["Body"].read() == body
    finally:
        c.close()
