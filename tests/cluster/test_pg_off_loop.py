"""A gateway on PostgreSQL never waits for the database on its event loop.

Each index call crosses the network; one made on the loop stalls every request in the
process behind it. The gateway runs with POCKET_INDEX_LOOP_CHECK=1 (pg_backend.py logs
every transaction begun on a loop's thread) through the work that reads the index in
the background as well as in requests: S3 traffic with versions and multipart uploads,
a node lost and repaired, scrub collections, lifecycle expirations, heartbeats.
"""
from __future__ import annotations

import random
import urllib.request

import pytest
from botocore.exceptions import ClientError

from storage.index.index import Index
from storage.index.pg_backend import PgBackend

from .crash_checks import wait_repaired
from .harness import ProcCluster, pocket, wait_for

LOOP_ERROR = "on the event loop's thread"


def _body(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _loop_reads(log: str) -> list[str]:
    """Each distinct call stack pg_backend logged for a transaction begun on the loop."""
    stacks = set()
    for chunk in log.split(LOOP_ERROR)[1:]:
        lines = [line for line in chunk.splitlines()[1:] if line.startswith("  ")]
        stacks.add("\n".join(lines))
    return sorted(stacks)


def test_background_work_and_requests_read_postgres_off_the_loop(pg_server, tmp_path):
    dsn = pg_server.create_database()
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6,
                    sections={"index": {"backend": "postgres", "dsn": dsn},
                              "scrub": {"start_delay": 1, "collect_interval": 2, "interval": 3, "orphan_grace": 10},
                              "repair": {"interval": 0.5},
                              "lifecycle": {"interval": 1, "day_seconds": 1}})
    c.env_all["POCKET_INDEX_LOOP_CHECK"] = "1"
    c.start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="plain")
        s3.create_bucket(Bucket="kept")
        s3.put_bucket_versioning(Bucket="kept", VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_lifecycle_configuration(Bucket="plain", LifecycleConfiguration={"Rules": [
            {"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}]})
        bodies = {}
        for i in range(6):
            for bucket in ("plain", "kept"):
                bodies[(bucket, f"k{i}")] = _body(i, 1000 + 300_000 * (i % 2))
                s3.put_object(Bucket=bucket, Key=f"k{i}", Body=bodies[(bucket, f"k{i}")])
        s3.put_object(Bucket="kept", Key="k0", Body=_body(99, 2000))   # k0's first version goes noncurrent
        s3.put_object(Bucket="plain", Key="tmp/x", Body=_body(7, 500))
        up = s3.create_multipart_upload(Bucket="kept", Key="multi")["UploadId"]
        parts = [_body(200, 5 << 20), _body(201, 1000)]
        etags = [s3.upload_part(Bucket="kept", Key="multi", UploadId=up, PartNumber=n + 1, Body=p)["ETag"]
                 for n, p in enumerate(parts)]
        s3.complete_multipart_upload(Bucket="kept", Key="multi", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})

        c.stop(c.node_ids[0])                       # a node away: degraded writes queue repairs
        for i in range(4):
            bodies[("plain", f"d{i}")] = _body(50 + i, 200_000)
            s3.put_object(Bucket="plain", Key=f"d{i}", Body=bodies[("plain", f"d{i}")])
        c.start_node(c.node_ids[0])
        assert wait_repaired(c)["repair_queue"] == 0, "the degraded writes were not repaired"
        wait_for("a scrub collection", lambda: (pocket(c, "status", "--json")[1]["last_scrub"] or {}).get("finished"), every=0.3)
        wait_for("the lifecycle expiration of tmp/x",
              lambda: "Contents" not in s3.list_objects_v2(Bucket="plain", Prefix="tmp/"))

        first = s3.list_object_versions(Bucket="kept", Prefix="k0")["Versions"][-1]["VersionId"]
        assert s3.get_object(Bucket="kept", Key="k0", VersionId=first)["Body"].read() == bodies[("kept", "k0")]
        s3.delete_object(Bucket="kept", Key="k5")
        with pytest.raises(ClientError) as gone:
            s3.head_object(Bucket="kept", Key="k5")      # the latest is a delete marker
        assert gone.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true"
        s3.copy_object(Bucket="plain", Key="copy", CopySource={"Bucket": "kept", "Key": "k1"})
        s3.put_object_tagging(Bucket="plain", Key="copy", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
        s3.delete_objects(Bucket="plain", Delete={"Objects": [{"Key": "k2"}, {"Key": "k3"}]})
        del bodies[("plain", "k2")], bodies[("plain", "k3")], bodies[("kept", "k5")]
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"plain", "kept"}
        with urllib.request.urlopen(c.endpoint + "/_pocket/metrics") as r:
            assert b"pocket_repair_queue_length 0.0" in r.read()
        for (bucket, key), body in bodies.items():
            if not (bucket == "kept" and key == "k0"):
                assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        assert s3.get_object(Bucket="kept", Key="multi")["Body"].read() == b"".join(parts)
        assert len(s3.list_object_versions(Bucket="kept", Prefix="k0")["Versions"]) == 2
        index = Index(PgBackend(dsn))
        try:
            assert index.get_object("plain", "d0") is not None   # the gateway really was on PostgreSQL
        finally:
            index.close()
        offenders = _loop_reads(c.log("gateway"))
        assert not offenders, "index reads on the event loop:\n\n" + "\n\n".join(offenders)
    finally:
        c.close()
