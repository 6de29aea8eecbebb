"""Probe tests for failed and drained disks: `pocket disk fail|drain`, with the cluster running
or stopped, embedded or not (disks added, replace and rebalance: test_disks_added.py).

EC 4+2 volumes over seven single-disk nodes unless said otherwise, so every volume has
a disk left over to take a slot. "Full redundancy is back" is checked the strict way:
after the move, two more nodes are stopped and every object must still read back,
which only works if the moved fragments really exist on their new disks.
"""
import json
import os
import signal
import urllib.request

from storage.node import packformat

from . import forkserver
from .archives import archive_parts
from .disk_checks import archives_on, check_all, disk_rows, in_state, load_objects, stop_two_more_and_check
from .harness import ProcCluster, free_port_run, metric, pocket, wait_for
from .test_pocket_up import _client, _stop, _up


def _wait(what, check, timeout: float = 120.0):
    return wait_for(what, check, timeout, every=0.25)


def _parts(s3, bucket: str, key: str, bodies: list[bytes]) -> tuple[str, list[dict]]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    return up, [p for n, body in enumerate(bodies, 1) for p in _parts_for(s3, bucket, key, up, n, body)]


def _parts_for(s3, bucket: str, key: str, up: str, number: int, body: bytes) -> list[dict]:
    return [{"PartNumber": number, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=number,
                                                          Body=body)["ETag"]}]


def _complete(s3, bucket: str, key: str, up: str, parts: list[dict]) -> None:
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts})


def test_down_disk_is_declared_failed_rebuilt_elsewhere_and_remembered(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), nodes=7,
                    sections={"scrub": {"enabled": False}, "repair": {"interval": 1.0, "failed_after": 3.0}})
    c.start()
    try:
        s3 = c.client()
        objects = load_objects(s3, "bkt", 18)
        on_victim = archives_on(c, "n2d1")
        assert on_victim
        c.signal("n2", signal.SIGKILL)

        _wait("n2d1 declared failed", lambda: in_state(c.endpoint, "n2d1", "failed"))
        rows = disk_rows(c)
        assert rows["n2d1"]["state"] == "failed"
        assert rows["n2d1"]["slots"] == 0 and "failed_after" in rows["n2d1"]["reason"]
        assert "declared FAILED" in c.log("gateway")
        for _ in range(8):   # whichever of the two workers answers the scrape says the same
            metrics = urllib.request.urlopen(c.endpoint + "/_pocket/metrics").read().decode()
            assert 'pocket_disk_state{disk="n2d1",state="failed"} 1.0' in metrics
        _wait("rebuild done", lambda: metric(c.endpoint, "pocket_repair_queue_length") == 0
              and disk_rows(c)["n2d1"]["moves_off"] == 0 and pocket(c, "status", "--json")[1]["repair_queue"] == 0)
        # every fragment that was on n2d1 now exists on some other disk
        elsewhere = {name for disk, name in map(archive_parts, c.archive_files()) if disk != "n2d1"}
        assert on_victim <= elsewhere

        code, report = pocket(c, "scrub", "--json", ok=(0, 2))
        assert report["missing"] == [] and report["corrupt"] == []
        assert set(report["disks_skipped"]) <= {"n2d1"}

        c.stop("gateway")                     # the failed state is in the index, not in memory
        c.start_gateway()
        assert disk_rows(c)["n2d1"]["state"] == "failed"
        check_all(s3, "bkt", objects)
        stop_two_more_and_check(c, s3, objects, keep=set())
    finally:
        c.close()


def test_drain_with_the_cluster_running(seven):
    c = seven
    s3 = c.client()
    objects = load_objects(s3, "bkt", 18)
    bodies = [os.urandom(5 << 20), os.urandom(300_000)]
    _complete(s3, "bkt", "mp", *_parts(s3, "bkt", "mp", bodies))     # a multipart object
    objects["mp"] = b"".join(bodies)
    still_open = _parts(s3, "bkt", "open", bodies[:1])                # and an upload not completed yet
    assert archives_on(c, "n3d1")
    code, out = pocket(c, "disk", "drain", "n3d1", "--json")
    assert out["ok"] and out["drained"] == ["n3d1"]
    assert out["moves"]["copied"] > 0 and not out["moves"]["failed"]
    rows = disk_rows(c)
    assert rows["n3d1"]["state"] == "drained" and rows["n3d1"]["slots"] == 0
    assert archives_on(c, "n3d1") == set()
    up, parts = still_open
    _complete(s3, "bkt", "open", up, parts + _parts_for(s3, "bkt", "open", up, 2, bodies[1]))
    objects["open"] = b"".join(bodies)
    check_all(s3, "bkt", objects)
    objects["after"] = os.urandom(300_000)
    s3.put_object(Bucket="bkt", Key="after", Body=objects["after"])
    assert not archives_on(c, "n3d1"), "a new write went to the drained disk"
    volumes = pocket(c, "status", "--json")[1]["volumes"]
    c.stop("gateway")            # the disks alone tell where every slot is now
    pocket(c, "index", "rebuild", "--json")
    c.start_gateway()
    assert pocket(c, "status", "--json")[1]["volumes"] == volumes
    c.stop("n3")
    stop_two_more_and_check(c, s3, objects, keep=set())


def test_fail_with_the_cluster_stopped(seven):
    c = seven
    s3 = c.client()
    objects = load_objects(s3, "bkt", 18)
    c.stop("gateway")
    c.stop("n4")
    code, out = pocket(c, "disk", "fail", "n4d1", "--json")
    assert out["ok"], out
    assert out["moves"]["queued"] > 0 and out["repair"]["fragments"] == out["moves"]["queued"]
    assert out["left"] == []
    c.start_gateway()
    assert disk_rows(c)["n4d1"]["state"] == "failed"
    stop_two_more_and_check(c, s3, objects, keep=set())


def test_drain_of_an_embedded_cluster_hands_pack_cleanup_to_the_gateway(tmp_path):
    """`pocket up` without node processes: the gateway owns every disk's pack files, so the
    command cannot delete small archives there; the gateway does, and then d3 is drained."""
    data = str(tmp_path / "pocket-data")
    # the test's waits (as harness._TEST_SECTIONS has them): a slot's old copies go 0.1 s after
    # the switch, not 2 s (per slot, one after the other), and the gateway looks for the
    # handed-over cleanup every second, not every 10 s
    env = {**os.environ, "POCKET_REPAIR_MOVE_SETTLE": "0.1", "POCKET_REPAIR_INTERVAL": "1"}
    proc, info = _up(data, free_port_run(1), "--disks", "7", env=env)
    try:
        s3 = _client(info)
        s3.create_bucket(Bucket="bkt")
        objects = {f"o{i}": os.urandom(size) for i, size in enumerate([100, 5000, 200_000, 3 << 20] * 3)}
        for key, body in objects.items():
            s3.put_object(Bucket="bkt", Key=key, Body=body)

        def run(*args, ok=(0,)):
            out = forkserver.run([*args, "--data", data, "--json"], timeout=120, env=env)
            assert out.returncode in ok, out.stdout + out.stderr
            return json.loads(out.stdout)
        out = run("disk", "drain", "d3")
        assert out["ok"] and sum(m["kept"] for m in out["moves"]["done"]) > 0
        _wait("the gateway to finish the drain", lambda: in_state(info["S3 endpoint"], "d3", "drained"))
        assert {r["id"]: r for r in run("disk", "list")}["d3"]["state"] == "drained"
        d3 = os.path.join(data, "disks", "d3")
        assert not packformat.live_archives(os.path.join(d3, "packs"))
        assert not [f for _, _, files in os.walk(os.path.join(d3, "archives")) for f in files]
        for key, body in objects.items():
            assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == body, key
    finally:
        _stop(proc)
