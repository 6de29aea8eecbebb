"""`pocket repair` and `pocket status` beside a running `pocket up` gateway that owns its
disk folders: the commands attach them with their packs scanned only when an archive that
may be packed is looked up (node/deferred_packs.py), not at start-up. A lost archive file
is found, counted at risk, rebuilt byte for byte, and every object reads back whole."""
import os
import random

from .archives import archive_parts, on_disks, read_archive
from .crash_checks import whole_again
from .disk_checks import check_all, load_objects
from .harness import QUIET, ProcCluster, pocket


def test_repair_and_status_beside_an_embedded_gateway(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True, sections=QUIET).start()
    try:
        s3 = c.client()
        objects = load_objects(s3, "emb", 18)
        refs = on_disks(c.disk_paths)
        assert any("#" in r for r in refs), "the load has packed archives"
        lost = random.Random(12).choice(sorted(r for r in refs if "#" not in r))
        original = read_archive(lost)
        os.unlink(lost)

        _, found = pocket(c, "scrub", "--json", ok=(1,))
        assert [m["archive"] for m in found["missing"]] == [archive_parts(lost)[1]]
        _, st = pocket(c, "status", "--json")
        assert st["repair_queue"] == 1 and st["objects_at_risk"] == 1, st["at_risk"]

        _, fixed = pocket(c, "repair", "--json")
        assert fixed["fragments"] == 1 and fixed["failed"] == [] and fixed["remaining"] == 0, fixed
        assert read_archive(lost) == original
        _, st = pocket(c, "status", "--json")
        assert st["repair_queue"] == 0 and st["objects_at_risk"] == 0, st["at_risk"]
        whole_again(c)
        check_all(s3, "emb", objects)
    finally:
        c.close()
