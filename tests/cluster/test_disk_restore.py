"""Probe tests for `pocket disk restore`: a failed or drained disk comes back, empty of
stale archives, and `pocket rebalance` gives it slots again.

The disk is kept down while the cluster changes (objects deleted and overwritten, its
slots rebuilt elsewhere), so what it still holds when it returns is exactly what must
never be served again. Seven single-disk nodes with EC 4+2 volumes, as in test_disks.py.
"""
import shutil

import pytest

from .disk_checks import (archives_on, change_while_away, check_all, disk_rows, in_state, load_objects,
                          stop_two_more_and_check)
from .harness import pocket, wait_for

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)


def _rebalance_onto(c, disk: str, s3, objects: dict[str, bytes], deleted: list[str]) -> None:
    """After restore: rebalance gives the disk slots, and every object reads back exactly."""
    code, out = pocket(c, "rebalance", "--json", "--rate", str(64 << 20))
    assert out["ok"], out
    assert any(m["to"] == disk for m in out["moves"]["done"])
    assert disk_rows(c)[disk]["slots"] > 0 and archives_on(c, disk)
    check_all(s3, "bkt", objects)
    for key in deleted:
        assert s3.list_objects_v2(Bucket="bkt", Prefix=key)["KeyCount"] == 0, key
    stop_two_more_and_check(c, s3, objects, keep={disk[:2]})


def test_failed_disk_restored_with_the_cluster_running_then_rebalanced(seven):
    c = seven
    s3 = c.client()
    objects = load_objects(s3, "bkt", 18)
    c.stop("n2")
    code, out = pocket(c, "disk", "fail", "n2d1", "--json")
    assert out["ok"], out
    deleted = change_while_away(s3, objects)
    c.start_node("n2")                    # the disk comes back with its old archives
    stale = archives_on(c, "n2d1")
    assert stale

    code, out = pocket(c, "disk", "restore", "n2d1", "--json")
    assert out["ok"] and out["was"] == "failed" and out["gateway_adopted"], out
    assert out["removed"] == len(stale) and out["kept"] == []
    assert archives_on(c, "n2d1") == set(), "stale archives left on the restored disk"
    row = disk_rows(c)["n2d1"]
    assert row["state"] == "up" and row["slots"] == 0
    assert in_state(c.endpoint, "n2d1", "up")        # the running gateway follows
    code, again = pocket(c, "disk", "restore", "n2d1", "--json", ok=(2,))
    assert "in service already" in again["error"]

    _rebalance_onto(c, "n2d1", s3, objects, deleted)


def test_drained_disk_restored_with_the_cluster_stopped_then_rebalanced(seven, tmp_path):
    """Drained while it was unplugged (so rebuilt elsewhere, not copied off): plugged back,
    its archives are still there. Restored with gateway and node stopped, the tool opens
    its folder directly; `--wipe` clears it whatever it holds."""
    c = seven
    s3 = c.client()
    objects = load_objects(s3, "bkt", 18)
    c.stop("n3")
    folder, away = c.disk_paths["n3d1"], str(tmp_path / "unplugged")
    shutil.move(folder, away)
    code, out = pocket(c, "disk", "drain", "n3d1", "--json")
    assert out["ok"] and out["drained"] == ["n3d1"], out
    assert {m["mode"] for m in out["moves"]["done"]} == {"rebuild"}
    deleted = change_while_away(s3, objects)
    c.stop("gateway")
    shutil.move(away, folder)
    stale = archives_on(c, "n3d1")
    assert stale

    code, out = pocket(c, "disk", "restore", "n3d1", "--wipe", "--json")
    assert out["ok"] and out["was"] == "drained" and out["wiped"], out
    assert out["removed"] == len(stale) and out["gateway_adopted"] is False
    assert archives_on(c, "n3d1") == set()

    c.start_node("n3")
    c.start_gateway()
    wait_for("n3d1 up at the gateway", lambda: in_state(c.endpoint, "n3d1", "up"), 60, every=0.25)
    # a starting gateway gives a disk in no volume new volumes, as it does a new disk
    assert disk_rows(c)["n3d1"]["slots"] > 0
    _rebalance_onto(c, "n3d1", s3, objects, deleted)


def test_restore_refuses_a_disk_in_service_or_down_and_changes_nothing(seven, tmp_path):
    c = seven
    s3 = c.client()
    objects = load_objects(s3, "bkt", 6)
    code, out = pocket(c, "disk", "restore", "n1d1", "--json", ok=(2,))
    assert "in service already" in out["error"]
    c.stop("n4")
    pocket(c, "disk", "fail", "n4d1", "--json")
    before = archives_on(c, "n4d1")
    # its node is down and its folder is not mounted: nothing can be checked
    folder, away = c.disk_paths["n4d1"], str(tmp_path / "unmounted")
    shutil.move(folder, away)
    try:
        code, out = pocket(c, "disk", "restore", "n4d1", "--json", ok=(2,))
        assert "does not answer" in out["error"] and "Nothing was changed" in out["error"]
    finally:
        shutil.move(away, folder)
    assert disk_rows(c)["n4d1"]["state"] == "failed" and archives_on(c, "n4d1") == before
    check_all(s3, "bkt", objects)
