"""A write whose index commit failed stays failed: not after a disk that missed the
cleanup comes back, not after `pocket index rebuild`.

The window between "archives on the disks" and "index commit" is microseconds wide in a
gateway; the test widens it by holding the LMDB write lock from this process (as a second
process sharing the index may), which stops the gateway's commit until it is let go."""
import os
import threading
import time

from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.objects.ids import id_time

from .archives import archive_parts
from .harness import ProcCluster, metric, pocket, wait_for

RECEIVED = "pocket_s3_bytes_received_total"
from .signing import send, sign


def _xml_code(body: bytes) -> str:
    return body.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode()


class _Gate:
    """A slow request body: the first half at once, the rest when let go."""

    def __init__(self, data: bytes):
        self.data, self.half_sent, self.go = data, threading.Event(), threading.Event()

    def body(self):
        yield self.data[:len(self.data) // 2]
        self.half_sent.set()
        self.go.wait(60)
        yield self.data[len(self.data) // 2:]


def _start_put(c: ProcCluster, url: str, gate: _Gate, headers: dict | None = None) -> tuple[threading.Thread, dict]:
    """Send a PUT whose body stops half way; returns once the gateway has received that
    half (so it has checked the request's condition and is storing the body)."""
    result: dict = {}
    received = metric(c.endpoint, RECEIVED)
    thread = threading.Thread(target=lambda: result.update(answer=send(sign("PUT", url, headers), gate.body())))
    thread.start()
    assert gate.half_sent.wait(30)
    wait_for("the gateway to receive the first half of the body",
             lambda: metric(c.endpoint, RECEIVED) >= received + len(gate.data) // 2, timeout=30, every=0.02)
    return thread, result


def _hold_index_writes(path: str) -> tuple[threading.Event, threading.Thread]:
    """Take the LMDB write lock of the gateway's index until the returned event is set."""
    held, release = threading.Event(), threading.Event()
    index = Index(LmdbBackend(path))

    def hold():
        try:
            index.write(lambda ops: (held.set(), release.wait(60)))
        finally:
            index.close()
    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(30)
    return release, thread


def test_refused_conditional_put_does_not_come_back_after_a_rebuild(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), storage={"default_policy": "replica"},
                    sections={"scrub": {"enabled": False, "orphan_grace": 10}, "repair": {"enabled": False}}).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="cond")
        url = f"{c.endpoint}/cond/k"
        old, refused = _Gate(os.urandom(60_000)), _Gate(os.urandom(60_000))
        # the plain PUT starts first, the conditional one second (a newer version, which a
        # rebuild would prefer), and both pass the early check while the key is absent
        old_put, old_result = _start_put(c, url, old)
        cond_put, cond_result = _start_put(c, url, refused, {"If-None-Match": "*"})
        before = c.archive_files()
        old.go.set()
        old_put.join(60)
        assert old_result["answer"][0] == 200
        with_old = c.archive_files()

        release, holder = _hold_index_writes(os.path.join(c.root, "index"))
        try:
            refused.go.set()
            deadline = time.monotonic() + 30
            while len(c.archive_files() - with_old) < 3:   # the refused write's replicas, committed on disk
                assert time.monotonic() < deadline, c.archive_files() - with_old
                time.sleep(0.05)
            leftover = sorted(c.archive_files() - with_old)[0]
            disk, name = archive_parts(leftover)
            node = disk.split("d")[0]
            c.stop(node)   # the cleanup cannot reach this copy
        finally:
            release.set()
            holder.join(30)
        cond_put.join(60)
        status, _, body = cond_result["answer"]
        assert (status, _xml_code(body)) == (412, "PreconditionFailed")
        assert s3.get_object(Bucket="cond", Key="k")["Body"].read() == old.data
        assert "could not delete archive" in c.log("gateway")

        c.start_node(node)
        assert leftover in c.archive_files()   # the 412'd version, manifest and all, is back on a disk
        c.stop("gateway")
        pocket(c, "index", "rebuild")
        c.start_gateway()
        s3 = c.client()
        assert s3.get_object(Bucket="cond", Key="k")["Body"].read() == old.data
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="cond")["Contents"]] == ["k"]

        wait_for("the leftover to be older than the 10 s orphan grace (the least the config takes)",
                 lambda: time.time() - id_time(name.split(".")[0]) > 10.05, timeout=20, every=0.05)
        pocket(c, "scrub", "--json")
        assert leftover not in c.archive_files()
        assert {archive_parts(ref)[1] for ref in c.archive_files() - before} == \
            {archive_parts(ref)[1] for ref in with_old - before}   # only the old object's replicas remain
        assert s3.get_object(Bucket="cond", Key="k")["Body"].read() == old.data
    finally:
        c.close()
