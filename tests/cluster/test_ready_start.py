"""A gateway that says ready is ready: the first requests after /_pocket/ready succeed.

Seen under load: the first PUT to a freshly started cluster answered 503 ("Too few disks
are reachable") after the harness had waited for /_pocket/ready. These start clusters
the way users do and check what a deploy script would: ready, then requests without
retries, and no disk marked down in the log of a start where nothing was down.
"""
from __future__ import annotations

import boto3
from botocore.config import Config as BotoConfig

from .conftest import payload
from .harness import ACCESS_KEY, SECRET_KEY, ProcCluster


def _no_retries(c: ProcCluster):
    return boto3.client("s3", endpoint_url=c.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name="us-east-1", config=BotoConfig(retries={"max_attempts": 1}, read_timeout=60))


def test_workers_over_in_process_disks_start_with_every_disk_up(tmp_path):
    """The disk owner refuses requests signed before it started; workers forked beside it
    sent their first heartbeats before, got 403 and began serving with every disk down."""
    c = ProcCluster(str(tmp_path / "cluster"), nodes=1, disks_per_node=6, embedded=True, workers=2).start()
    try:
        s3 = _no_retries(c)
        s3.create_bucket(Bucket="first-light")
        body = payload(300_000, "first-light")
        s3.put_object(Bucket="first-light", Key="first", Body=body)
        assert s3.get_object(Bucket="first-light", Key="first")["Body"].read() == body
        downs = [line for line in c.log("gateway").splitlines() if "marked down" in line]
        assert not downs, f"disks marked down while nothing was down: {downs[:3]}"
    finally:
        c.close()
