"""Power loss, not just a killed process: every node of a cluster loses power under load
(SIGKILL, then each disk rewritten to what its node had fsync'd: power_cut.py), and
every PUT that was acknowledged must still read back byte-exact, with at least its write
quorum of fragments on the disks (k+1 = 5 of ec:4+2, 2 of replica:3), none corrupt.

A store that acknowledged before fsync, renamed before the data was synced, or created
a folder and never synced its parent loses files here that a SIGKILL alone would keep."""
from __future__ import annotations

import random
from collections import Counter

from . import power_cut
from .conftest import payload
from .crash_checks import SMALL_SEGMENTS, seed
from .harness import QUIET, ProcCluster, pocket, wait_http

SIZES = [1000, 20_000, 50_000, 150_000, 400_000, 1_200_000]


def test_power_loss_of_every_node_keeps_every_acknowledged_object(tmp_path):
    rng = random.Random(seed())
    c = ProcCluster(str(tmp_path / "cluster"), storage=SMALL_SEGMENTS,
                    sections=QUIET)
    outage = power_cut.Outage(c)
    try:
        outage.start()
        s3 = c.client()
        s3.create_bucket(Bucket="power")

        def put(client, item):
            key, size = item
            data = payload(size)
            client.put_object(Bucket="power", Key=key, Body=data)
            return key, data
        acked, dropped = outage.under_load([(f"o{i:03d}", rng.choice(SIZES)) for i in range(400)], put,
                                           workers=6, at_least=40)
        print(f"{len(acked)} PUTs acknowledged; dropped at power loss: {dropped}")

        for node in c.node_ids:
            c.start_node(node)
        wait_http(c.endpoint + "/_pocket/ready")
        s3 = c.client()
        for key, data in acked.items():
            assert s3.get_object(Bucket="power", Key=key)["Body"].read() == data, key
        _, report = pocket(c, "scrub", "--orphan-grace", "0", "--json", ok=(0, 1))
        assert report["corrupt"] == [], report["corrupt"][:3]
        lost = Counter(row["key"] for row in report["missing"] if row["key"] in acked)
        assert all(n <= 1 for n in lost.values()), f"acknowledged objects below their write quorum: {lost}"
    finally:
        c.close()
