"""Restarts and index loss: the disks alone are enough to find every object again."""
import json
import shutil

import pytest
from botocore.exceptions import ClientError

from . import forkserver
from .conftest import payload
from .harness import pocket

SEG = 1 << 20


def _load(s3):
    s3.create_bucket(Bucket="keep")
    s3.create_bucket(Bucket="empty-bucket")
    objects = {}
    for i, size in enumerate([0, 10, 150_000, SEG + 1, 3 * SEG]):
        key = f"dir{i % 2}/obj{i}"
        data = payload(size)
        s3.put_object(Bucket="keep", Key=key, Body=data, ContentType=f"type/{i}", Metadata={"n": str(i)},
                      CacheControl="max-age=60")
        objects[key] = (data, f"type/{i}", {"n": str(i)})
    s3.put_object(Bucket="keep", Key="overwritten", Body=payload(300_000))
    s3.put_object(Bucket="keep", Key="overwritten", Body=b"new")
    objects["overwritten"] = (b"new", "binary/octet-stream", {})
    s3.put_object(Bucket="keep", Key="deleted", Body=b"bye")
    s3.delete_object(Bucket="keep", Key="deleted")
    s3.create_bucket(Bucket="dropped")
    s3.delete_bucket(Bucket="dropped")
    return objects


def _check(s3, objects):
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="keep")["Contents"]]
    assert listed == sorted(objects)
    for key, (data, ctype, meta) in objects.items():
        got = s3.get_object(Bucket="keep", Key=key)
        assert got["Body"].read() == data, key
        assert got["ContentType"] == ctype
        assert got["Metadata"] == meta
    with pytest.raises(ClientError):
        s3.head_object(Bucket="keep", Key="deleted")
    names = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    assert names == ["empty-bucket", "keep"]


def test_restart_finds_every_object(fresh_cluster):
    c = fresh_cluster
    objects = _load(c.client())
    c.close()
    c.start()
    _check(c.client(), objects)


def test_index_rebuild_from_disks(fresh_cluster):
    c = fresh_cluster
    objects = _load(c.client())
    c.stop("gateway")
    shutil.rmtree(f"{c.root}/index")
    out = forkserver.run(["index", "rebuild", "--config", c.config, "--json"], timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["objects"] == len(objects)
    assert report["buckets"] == 2
    c.start_gateway()
    _check(c.client(), objects)
    head = c.client().head_object(Bucket="keep", Key="dir0/obj0")
    assert head["CacheControl"] == "max-age=60"


def test_rebuild_does_not_resurrect_deletes_seen_by_a_dead_disk(fresh_cluster):
    """A node that was down during a delete still holds its fragment; the tombstones
    on the other disks keep the object deleted after a rebuild."""
    import signal
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="tomb")
    s3.put_object(Bucket="tomb", Key="k", Body=payload(2 * SEG))
    s3.put_object(Bucket="tomb", Key="stays", Body=b"here")
    c.signal(c.node_ids[0], signal.SIGKILL)
    s3.delete_object(Bucket="tomb", Key="k")
    c.start_node(c.node_ids[0])
    c.stop("gateway")
    shutil.rmtree(f"{c.root}/index")
    pocket(c, "index", "rebuild")   # exits 0, else fails with its output
    c.start_gateway()
    keys = [o["Key"] for o in c.client().list_objects_v2(Bucket="tomb").get("Contents", [])]
    assert keys == ["stays"]
