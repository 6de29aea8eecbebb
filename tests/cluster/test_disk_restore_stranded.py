"""`pocket disk restore` of a failed disk whose slots had nowhere to go (test_disk_restore.py
has the others; apart so that xdist runs the two files side by side)."""
from .disk_checks import archives_on, change_while_away, check_all, disk_rows, load_objects
from .harness import pocket


def test_failed_disk_with_stranded_slots_keeps_their_fragments_when_restored(six):
    """Six disks, volumes six wide: a failed disk's wide slots had nowhere to go, so it still
    holds them. Restored, it keeps (and checks) those fragments and drops the stale rest."""
    c = six
    s3 = c.client()
    objects = load_objects(s3, "bkt", 18)
    c.stop("n1")
    code, out = pocket(c, "disk", "fail", "n1d1", "--json", ok=(1,))
    assert out["unplaced"] and out["planned"]
    deleted = change_while_away(s3, objects)
    c.start_node("n1")
    code, out = pocket(c, "disk", "restore", "n1d1", "--json")
    assert out["ok"] and out["kept"] and out["removed"] > 0, out
    assert archives_on(c, "n1d1") == {name for name in out["kept"]}
    assert disk_rows(c)["n1d1"]["state"] == "up" and disk_rows(c)["n1d1"]["slots"] > 0
    code, rep = pocket(c, "repair", "--json", ok=(0, 1))   # what was written while it was away
    assert rep["failed"] == [] and {d["key"] for d in rep["deferred"]} <= set(deleted), rep
    check_all(s3, "bkt", objects)
    for key in deleted:
        assert s3.list_objects_v2(Bucket="bkt", Prefix=key)["KeyCount"] == 0, key
    c.stop("n2")
    c.stop("n3")
    check_all(s3, "bkt", objects)     # n1d1's kept fragments are really there
