"""`pocket index rebuild` tells an upload a crash interrupted (never acknowledged: a
warning, exit 0) from a version that may have been acknowledged and is lost (exit 1).

A PUT killed mid-flight leaves some of its fragments renamed into place and no index
commit. Here the disks are put in exactly that state by removing fragments of one large
object (its own files, not packed) with the cluster stopped. With every disk answering,
fewer than k fragments prove the PUT never reached its write quorum; with a disk that
held one of the missing fragments unreachable, they prove nothing, and it is a failure.
"""
import os
import shutil

from .archives import archive_parts, archives_of
from .conftest import payload
from .disk_checks import check_all, load_objects
from .harness import pocket


def test_rebuild_warns_of_an_interrupted_upload_and_fails_on_a_possible_loss(six, tmp_path):
    c = six
    s3 = c.client()
    objects = load_objects(s3, "bkt", 9)
    s3.put_object(Bucket="bkt", Key="cut", Body=payload(3 << 20, seed="cut"))
    refs = archives_of(c, "bkt", "cut")
    assert len(refs) == 6 and not any("#" in r for r in refs)
    c.stop("gateway")
    removed = refs[:3]                   # 3 of 6 left: fewer than k = 4
    for ref in removed:
        os.unlink(ref)
    away_disk = archive_parts(removed[0])[0]

    # a disk that may have held a fragment does not answer: maybe acknowledged, maybe lost
    node = away_disk[:2]
    c.stop(node)
    folder, away = c.disk_paths[away_disk], str(tmp_path / "unmounted")
    shutil.move(folder, away)
    shutil.rmtree(c.root + "/index")
    code, report = pocket(c, "index", "rebuild", "--json", ok=(1,))
    assert report["disks_unreachable"] == [away_disk]
    assert [r["key"] for r in report["lost"]] == ["cut"] and report["interrupted"] == []
    shutil.move(away, folder)
    c.start_node(node)

    # every disk answers: the PUT cannot have reached its quorum, a warning only
    shutil.rmtree(c.root + "/index")
    code, report = pocket(c, "index", "rebuild", "--json")
    assert report["lost"] == [] and report["unreadable"] == 0
    assert [r["key"] for r in report["interrupted"]] == ["cut"]
    assert report["objects"] == len(objects)
    code, text = pocket(c, "index", "rebuild")
    assert "WARNING: bkt/cut" in text and "interrupted before it was acknowledged" in text

    c.start_gateway()
    assert "cut" not in {o["Key"] for o in s3.list_objects_v2(Bucket="bkt").get("Contents", [])}
    check_all(s3, "bkt", objects)
