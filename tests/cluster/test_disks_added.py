"""Probe tests for disks added to a cluster: `pocket disk replace` (the cluster stopped, then
running), a grown cluster and rebalance, a failed disk whose slots wait for its replacement,
and the disk commands' refusals. Six single-disk nodes, so EC 4+2 volumes are six wide and
a slot has nowhere to go but a new disk; full redundancy is checked as in test_disks.py
(apart so that xdist runs the two files side by side)."""
import os
import threading

from .disk_checks import archives_on, check_all, disk_rows, load_objects, stop_two_more_and_check
from .harness import pocket


def test_replace_with_the_cluster_stopped_then_running(six):
    c = six
    s3 = c.client()
    objects = load_objects(s3, "bkt", 18)
    c.stop("gateway")
    n7 = c.add_node()
    c.start_node(n7)
    code, out = pocket(c, "disk", "replace", "n2d1", "n7d1", "--json")
    assert out["ok"] and {m["to"] for m in out["moves"]["done"]} == {"n7d1"}
    assert archives_on(c, "n2d1") == set()
    c.start_gateway()
    rows = disk_rows(c)
    assert rows["n2d1"]["slots"] == 0 and rows["n7d1"]["slots"] > 0
    c.stop("n2")
    check_all(s3, "bkt", objects)

    # now with the gateway running: a disk it has never opened takes n5d1's slots
    n8 = c.add_node()
    c.start_node(n8)
    code, out = pocket(c, "disk", "replace", "n5d1", "n8d1", "--json")
    assert out["ok"], out
    assert "added to the config since start" in c.log("gateway")
    c.stop("n5")
    stop_two_more_and_check(c, s3, objects, keep=set())


def test_bad_requests_are_refused_and_change_nothing(six):
    c = six
    s3 = c.client()
    objects = load_objects(s3, "bkt", 6)
    def table():
        rows = {d: (r["state"], r["slots"], r["moves_off"], r["moves_onto"]) for d, r in disk_rows(c).items()}
        return rows, pocket(c, "status", "--json")[1]["volumes"]
    before = table()
    code, out = pocket(c, "disk", "drain", "nope", "--json", ok=(2,))
    assert "no disk 'nope'" in out["error"]
    code, out = pocket(c, "disk", "replace", "n1d1", "n2d1", "--json", ok=(2,))
    assert "already in use" in out["error"]
    code, out = pocket(c, "disk", "drain", "n1d1", "--json", ok=(2,))   # six disks, volumes six wide
    assert "no disk can take" in out["error"] and "Nothing was changed" in out["error"]
    code, out = pocket(c, "disk", "fail", "n9d9", ok=(2,))
    assert table() == before
    check_all(s3, "bkt", objects)


def test_grown_cluster_gets_new_writes_and_rebalance_keeps_reads_whole(six):
    c = six
    s3 = c.client()
    objects = load_objects(s3, "bkt", 27)
    n7 = c.add_node()
    c.start_node(n7)
    c.stop("gateway")
    c.start_gateway()   # it grows the volumes onto n7 as it starts
    assert disk_rows(c)["n7d1"]["slots"] > 0
    for i in range(12):
        data = os.urandom(300_000 + i)
        s3.put_object(Bucket="bkt", Key=f"new{i}", Body=data)
        objects[f"new{i}"] = data
    assert archives_on(c, "n7d1"), "no new write landed on the new disk"

    _, plan = pocket(c, "rebalance", "--dry-run", "--json")
    assert plan["planned"][0]["to"] == "n7d1"         # the emptiest disk comes first
    assert all(m["from"] != "n7d1" for m in plan["planned"])
    before = len(archives_on(c, "n7d1"))

    errors, reads = [], [0]
    stop = threading.Event()

    def reader():
        r = c.client()
        while not stop.is_set():
            for key, data in objects.items():
                try:
                    got = r.get_object(Bucket="bkt", Key=key)["Body"].read()
                    if got != data:
                        errors.append(f"{key}: wrong bytes")
                except Exception as e:
                    errors.append(f"{key}: {e!r}")
                reads[0] += 1
    t = threading.Thread(target=reader)
    t.start()
    try:
        code, out = pocket(c, "rebalance", "--json", "--rate", str(64 << 20))
    finally:
        stop.set()
        t.join()
    assert out["ok"], out
    assert errors == [] and reads[0] > len(objects)
    assert len(out["moves"]["done"]) == len(plan["planned"])
    assert len(archives_on(c, "n7d1")) > before
    check_all(s3, "bkt", objects)
    _, again = pocket(c, "rebalance", "--dry-run", "--json")
    assert len(again["planned"]) < len(plan["planned"])


def test_failed_disk_with_nowhere_to_go_waits_for_a_replacement(six):
    """Six disks, volumes six wide: a failed disk's slots have nowhere to go until a disk is added."""
    c = six
    s3 = c.client()
    objects = load_objects(s3, "bkt", 18)
    c.stop("n1")
    code, out = pocket(c, "disk", "fail", "n1d1", "--json", ok=(1,))
    # the three-wide replica volumes find other disks; the six-wide ones cannot
    assert out["unplaced"] and {m["volume"][:2] for m in out["unplaced"]} == {"w6"}
    assert {m["volume"][:2] for m in out["planned"]} <= {"w3"}
    assert "no disk can take" in out["unplaced"][0]["error"]
    assert disk_rows(c)["n1d1"]["state"] == "failed"
    status = pocket(c, "status", "--json")[1]    # what lost a fragment is counted at risk
    assert status["objects_at_risk"] > 0 and status["repair_queue"] == status["objects_at_risk"]
    check_all(s3, "bkt", objects)                # degraded, but whole

    n7 = c.add_node()                             # the running gateway has never heard of it
    c.start_node(n7)
    code, out = pocket(c, "disk", "replace", "n1d1", "n7d1", "--json")
    assert out["ok"] and out["left"] == []
    assert out["gateway_adopted"] is True        # the reads below meet a gateway that uses n7d1
    assert {m["mode"] for m in out["moves"]["done"]} == {"rebuild"}
    assert pocket(c, "status", "--json")[1]["repair_queue"] == 0
    rows = disk_rows(c)
    assert rows["n1d1"]["state"] == "failed" and rows["n1d1"]["slots"] == 0 and rows["n7d1"]["slots"] > 0
    stop_two_more_and_check(c, s3, objects, keep=set())
