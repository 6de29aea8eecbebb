"""Power loss under DELETEs: every node loses power while small objects are being deleted
(SIGKILL, then each disk rewritten to what its node had fsync'd: power_cut.py). A
DELETE that was acknowledged stays deleted, through the index the gateway kept and
through an index rebuilt from the disks alone; an object nobody deleted reads back.

The archives of a deleted version are removed with deletes that wait for no fsync of
their own (packs.PackSet.delete, durable=False): a power cut may bring such an archive
back, and this is where that must not bring its object back."""
from __future__ import annotations

import os
import random
import shutil

from . import power_cut
from .conftest import payload
from .crash_checks import SMALL_SEGMENTS, seed
from .harness import QUIET, ProcCluster, pocket, wait_http


def _missing(s3, key: str) -> bool:
    try:
        s3.head_object(Bucket="gone", Key=key)
        return False
    except s3.exceptions.ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchKey"):
            return True
        raise


def test_power_loss_keeps_every_acknowledged_delete(tmp_path):
    rng = random.Random(seed())
    c = ProcCluster(str(tmp_path / "cluster"), storage=SMALL_SEGMENTS, sections=QUIET)
    outage = power_cut.Outage(c)
    try:
        outage.start()
        s3 = c.client()
        s3.create_bucket(Bucket="gone")
        bodies = {f"o{i:03d}": payload(rng.randint(500, 20_000)) for i in range(240)}
        for key, data in bodies.items():
            s3.put_object(Bucket="gone", Key=key, Body=data)

        def delete(client, key):
            client.delete_object(Bucket="gone", Key=key)
            return key, True
        acked, dropped = outage.under_load(sorted(bodies)[:200], delete, workers=8, at_least=60)  # 40 never deleted
        deleted = set(acked)
        print(f"{len(deleted)} DELETEs acknowledged; dropped at power loss: {dropped}")

        for node in c.node_ids:
            c.start_node(node)
        wait_http(c.endpoint + "/_pocket/ready")

        def check() -> None:
            s3 = c.client()
            back = [key for key in sorted(deleted) if not _missing(s3, key)]
            assert back == [], f"acknowledged DELETEs undone: {back[:5]}"
            for key in sorted(bodies)[200:]:
                assert s3.get_object(Bucket="gone", Key=key)["Body"].read() == bodies[key], key
        check()
        c.stop("gateway")                  # the index from the disks alone: the tombstones decide
        shutil.rmtree(os.path.join(c.root, "index"))
        pocket(c, "index", "rebuild")
        c.start_gateway()
        check()
        _, report = pocket(c, "scrub", "--orphan-grace", "0", "--json", ok=(0, 1))
        assert report["corrupt"] == [], report["corrupt"][:3]
    finally:
        c.close()
