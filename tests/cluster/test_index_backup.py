"""`pocket index backup` while the gateway serves writes, and `restore` after the gateway's disk
is lost: everything the backup saw is back at once; later writes are kept on the disks (no
scrub removes them as orphans) until `pocket index rebuild` brings them back too."""
import json
import os
import random
import shutil
import threading

from .harness import ProcCluster, pocket


def _body(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _keys(s3, bucket: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_backup_while_writing_then_restore_after_losing_the_index(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True,
                    sections={"scrub": {"start_delay": 0.2, "collect_interval": 0.5, "orphan_grace": 10.0}}).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="kept")
        sizes = {}
        for i in range(40):
            sizes[f"before/{i}"] = (random.Random(i).choice((500, 60_000, 700_000)), i)
            s3.put_object(Bucket="kept", Key=f"before/{i}", Body=_body(*sizes[f"before/{i}"]))
        s3.delete_object(Bucket="kept", Key="before/0")
        del sizes["before/0"]

        stop, during = threading.Event(), {}

        def writer():   # writes go on while the backup copies (a few: the scrub's safety valve
            n = 0       # would keep many unknown versions anyway; this test is about the restore mark)
            while not stop.is_set() and n < 8:
                key = f"during/{n}"
                c.client().put_object(Bucket="kept", Key=key, Body=_body(30_000, 1000 + n))
                during[key] = (30_000, 1000 + n)
                n += 1
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            dest = str(tmp_path / "backups" / "index-1")
            _, report = pocket(c, "index", "backup", dest, "--json")
        finally:
            stop.set()
            thread.join(60)
        assert report["bytes"] > 0 and os.path.exists(os.path.join(dest, "data.mdb"))
        assert json.load(open(os.path.join(dest, "pocket-index-backup.json")))["entries"] == report["entries"]

        # In archive files of their own (not packs, which only the gateway owning them may touch).
        after = {f"after/{i}": (1_200_000, 5000 + i) for i in range(5)}
        for key, (size, seed) in after.items():
            s3.put_object(Bucket="kept", Key=key, Body=_body(size, seed))

        code, _ = pocket(c, "index", "restore", dest, "--force", ok=(1,))   # the gateway still runs
        assert code == 1
        c.stop("gateway")
        code, _ = pocket(c, "index", "restore", dest, ok=(1,))               # an index is there
        assert code == 1
        shutil.rmtree(os.path.join(c.root, "index"))                          # the gateway's disk is lost
        pocket(c, "index", "restore", dest)
        c.start_gateway()

        s3 = c.client()
        listed = _keys(s3, "kept")
        assert set(sizes) <= listed and "before/0" not in listed and not set(after) & listed
        snapshot_during = {k for k in listed if k.startswith("during/")}
        for key in set(sizes) | snapshot_during:
            size, seed = sizes.get(key) or during[key]
            assert s3.get_object(Bucket="kept", Key=key)["Body"].read() == _body(size, seed), key

        # A scrub that would remove any unreferenced archive keeps the writes the backup did not see.
        # (Background passes use orphan_grace 10 s: 0 would also take archives of PUTs in flight.)
        _, scrub = pocket(c, "scrub", "--json", "--orphan-grace", "0", ok=(0, 1))
        assert not scrub["orphans_removed"]
        assert any(row["why"] == "index restored from a backup" for row in scrub["orphans_kept"])
        c.stop("gateway")
        pocket(c, "index", "rebuild")
        c.start_gateway()
        s3 = c.client()
        assert _keys(s3, "kept") == set(sizes) | set(during) | set(after)
        for key, (size, seed) in after.items():
            assert s3.get_object(Bucket="kept", Key=key)["Body"].read() == _body(size, seed)
    finally:
        c.close()
