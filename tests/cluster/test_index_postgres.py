"""Gateways whose index is in PostgreSQL, as S3 clients and operators see them.

A real PostgreSQL server (tests/pg_server.py) and a real gateway process; the schema
comes from `pocket index migrate-schema`, never from the test; `pocket index copy`
moves a loaded LMDB cluster's index into PostgreSQL and the gateway serves from there.
"""
from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config as BotoConfig

from storage.index import leases
from storage.index.index import Index
from storage.index.pg_backend import PgBackend
from storage.leased import holder_id

from . import forkserver
from ..pg_server import PgServer
from .harness import ACCESS_KEY, SECRET_KEY, ProcCluster, free_ports, pocket, wait_http


def _body(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _listing(s3, bucket: str, **kw) -> tuple[list[str], list[str]]:
    """Every key and common prefix, page by page through continuation tokens."""
    keys, prefixes, token = [], [], None
    while True:
        page = s3.list_objects_v2(Bucket=bucket, **kw, **({"ContinuationToken": token} if token else {}))
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            return keys, prefixes
        token = page["NextContinuationToken"]


def _use_postgres(c: ProcCluster, dsn: str) -> None:
    with open(c.config, "a") as f:
        f.write(f'\n[index]\nbackend = "postgres"\ndsn = "{dsn}"\n')


def test_gateway_on_postgres_serves_s3(pg_server, tmp_path):
    dsn = pg_server.create_database(template="template1")   # an empty database: no schema yet
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True,
                    sections={"scrub": {"enabled": False}, "lifecycle": {"interval": 0}})
    _use_postgres(c, dsn)
    refused = forkserver.run(["gateway", "--config", c.config], timeout=120)
    assert refused.returncode != 0 and "pocket index migrate-schema" in refused.stderr
    _, out = pocket(c, "index", "migrate-schema")
    assert "from version 0 to 3" in out
    _, out = pocket(c, "index", "migrate-schema")
    assert "nothing to do" in out
    c.start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="on-pg")
        long_stem = "deep/" + "x" * 600
        keys = ([f"a/{i:03d}" for i in range(30)] + [f"b/c/{i}" for i in range(5)] + ["top", "zé", "z~"]
                + [(long_stem + f"/{i:02d}").ljust(1024, "q") for i in range(12)])
        bodies = {k: _body(i, 100 + 37 * i) for i, k in enumerate(keys)}
        for k, b in bodies.items():
            s3.put_object(Bucket="on-pg", Key=k, Body=b)
        for k, b in bodies.items():
            assert s3.get_object(Bucket="on-pg", Key=k)["Body"].read() == b
        utf8_order = sorted(keys, key=lambda k: k.encode())
        assert _listing(s3, "on-pg", MaxKeys=7) == (utf8_order, [])
        assert _listing(s3, "on-pg", Delimiter="/", MaxKeys=2) == (["top", "z~", "zé"], ["a/", "b/", "deep/"])
        assert _listing(s3, "on-pg", Prefix="deep/", MaxKeys=5)[0] == [k for k in utf8_order if k.startswith("deep/")]
        assert _listing(s3, "on-pg", Prefix="a/", StartAfter="a/027") == (["a/028", "a/029"], [])

        with pytest.raises(s3.exceptions.ClientError) as refused_put:
            s3.put_object(Bucket="on-pg", Key="top", Body=b"again", IfNoneMatch="*")
        assert refused_put.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412

        s3.put_bucket_versioning(Bucket="on-pg", VersioningConfiguration={"Status": "Enabled"})
        v1 = s3.put_object(Bucket="on-pg", Key="v", Body=_body(100, 500))["VersionId"]
        v2 = s3.put_object(Bucket="on-pg", Key="v", Body=_body(101, 600))["VersionId"]
        s3.delete_object(Bucket="on-pg", Key="v")
        listed = s3.list_object_versions(Bucket="on-pg", Prefix="v")
        assert [v["VersionId"] for v in listed["Versions"]] == [v2, v1]
        assert len(listed["DeleteMarkers"]) == 1 and listed["DeleteMarkers"][0]["IsLatest"]
        assert s3.get_object(Bucket="on-pg", Key="v", VersionId=v1)["Body"].read() == _body(100, 500)

        up = s3.create_multipart_upload(Bucket="on-pg", Key="multi")["UploadId"]
        parts = [_body(200, 5 << 20), _body(201, 1000)]
        etags = [s3.upload_part(Bucket="on-pg", Key="multi", UploadId=up, PartNumber=n + 1, Body=p)["ETag"]
                 for n, p in enumerate(parts)]
        assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="on-pg")["Uploads"]] == [up]
        s3.complete_multipart_upload(Bucket="on-pg", Key="multi", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
        assert s3.get_object(Bucket="on-pg", Key="multi")["Body"].read() == b"".join(parts)
        assert not s3.list_multipart_uploads(Bucket="on-pg").get("Uploads")
    finally:
        c.close()


def test_index_copy_from_a_loaded_lmdb_cluster_then_serving_from_postgres_and_rebuilding_it(pg_server, tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True,
                    sections={"scrub": {"enabled": False}, "lifecycle": {"interval": 0}}).start()
    dsn = pg_server.create_database()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="moving")
        s3.put_bucket_versioning(Bucket="moving", VersioningConfiguration={"Status": "Enabled"})
        bodies = {f"k/{i:04d}": _body(i, 64 + i * 53) for i in range(300)}
        for k, b in bodies.items():
            s3.put_object(Bucket="moving", Key=k, Body=b)
        s3.put_object(Bucket="moving", Key="k/0000", Body=b"newer")
        before = _listing(s3, "moving", MaxKeys=1000)
        c.stop("gateway")

        _, report = pocket(c, "index", "copy", "--to", dsn, "--json")
        assert report["rows"]["objects"] == 300 and report["rows"]["versions"] == 301
        _use_postgres(c, dsn)
        c.start()
        s3 = c.client()
        assert _listing(s3, "moving", MaxKeys=1000) == before
        bodies["k/0000"] = b"newer"
        for k, b in bodies.items():
            assert s3.get_object(Bucket="moving", Key=k)["Body"].read() == b
        assert len(s3.list_object_versions(Bucket="moving", Prefix="k/0000")["Versions"]) == 2

        c.stop("gateway")   # and `pocket index rebuild` recreates the PostgreSQL index from the disks
        _, rebuilt = pocket(c, "index", "rebuild", "--json")
        assert (rebuilt["objects"], rebuilt["versions"]) == (300, 301)
        c.start()
        s3 = c.client()
        assert _listing(s3, "moving", MaxKeys=1000) == before
        assert s3.get_object(Bucket="moving", Key="k/0123")["Body"].read() == bodies["k/0123"]
    finally:
        c.close()


def _second_gateway(c: ProcCluster) -> str:
    """Another gateway process with the same config but its own port; its endpoint."""
    port = free_ports(1)[0]
    config = os.path.join(c.root, "pocket-gateway2.toml")
    with open(c.config) as f:
        text = f.read().replace(f'listen = "127.0.0.1:{c.port}"', f'listen = "127.0.0.1:{port}"')
    with open(config, "w") as f:
        f.write(text)
    c._spawn("gateway2", ["gateway", "--config", config])
    c._wait_port("gateway2", port)
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(endpoint + "/_pocket/ready")
    return endpoint


def test_two_gateways_on_one_postgres_share_the_namespace(pg_server, tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), nodes=3, disks_per_node=2,
                    sections={"scrub": {"enabled": False}, "repair": {"enabled": False},
                              "lifecycle": {"interval": 0}})
    _use_postgres(c, pg_server.create_database())
    c.start()
    try:
        one = c.client()
        two = boto3.client("s3", endpoint_url=_second_gateway(c), aws_access_key_id=ACCESS_KEY,
                           aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                           config=BotoConfig(retries={"max_attempts": 1}))
        one.create_bucket(Bucket="shared")
        for i in range(20):
            body = _body(1000 + i, 3000 + i * 1111)
            one.put_object(Bucket="shared", Key=f"w/{i:02d}", Body=body)
            assert two.get_object(Bucket="shared", Key=f"w/{i:02d}")["Body"].read() == body   # at once
        assert _listing(two, "shared", Prefix="w/", MaxKeys=6)[0] == [f"w/{i:02d}" for i in range(20)]
        two.delete_object(Bucket="shared", Key="w/00")
        with pytest.raises(one.exceptions.NoSuchKey):
            one.get_object(Bucket="shared", Key="w/00")

        def race(client, key, barrier):
            barrier.wait()
            try:
                client.put_object(Bucket="shared", Key=key, Body=_body(hash(key) & 0xFFFF, 2000),
                                  IfNoneMatch="*")
                return 200
            except one.exceptions.ClientError as e:
                return e.response["ResponseMetadata"]["HTTPStatusCode"]
        for n in range(8):
            barrier = threading.Barrier(2)
            with ThreadPoolExecutor(2) as pool:
                codes = sorted(pool.map(lambda cl: race(cl, f"race/{n}", barrier), [one, two]))
            assert codes == [200, 412], codes
    finally:
        c.close()


def test_postgres_away_is_503_slowdown_and_the_gateway_reconnects(tmp_path):
    server = PgServer().start()      # a server of its own: this test stops it
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True,
                    sections={"scrub": {"enabled": False}, "lifecycle": {"interval": 0}})
    _use_postgres(c, server.create_database())
    try:
        c.start()
        s3 = c.client(retries=1)
        s3.create_bucket(Bucket="steady")
        acked = {f"before/{i}": _body(i, 5000 + i) for i in range(10)}
        for k, b in acked.items():
            s3.put_object(Bucket="steady", Key=k, Body=b)

        server.halt()
        for call in (lambda: s3.put_object(Bucket="steady", Key="during", Body=b"x" * 100),
                     lambda: s3.get_object(Bucket="steady", Key="before/1"),
                     lambda: s3.list_objects_v2(Bucket="steady")):
            with pytest.raises(s3.exceptions.ClientError) as away:
                call()
            assert away.value.response["Error"]["Code"] == "SlowDown"
            assert away.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        server.resume()

        deadline = time.monotonic() + 60
        while True:   # the first requests may still meet connections to the old server
            try:
                s3.put_object(Bucket="steady", Key="after", Body=_body(99, 7000))
                break
            except s3.exceptions.ClientError:
                assert time.monotonic() < deadline, "the gateway did not reconnect within 60 s"
        acked["after"] = _body(99, 7000)
        for k, b in acked.items():
            assert s3.get_object(Bucket="steady", Key=k)["Body"].read() == b
        assert _listing(s3, "steady")[0] == sorted(acked)
    finally:
        c.close()
        server.stop()


def test_a_dead_gateways_leases_move_to_the_other(pg_server, tmp_path):
    """Repair, scrub collection, lifecycle and the failed-disk watcher run in one gateway at a
    time; when it is SIGKILLed, the other takes them over once the leases expire."""
    dsn = pg_server.create_database()
    c = ProcCluster(str(tmp_path / "cluster"), nodes=3, disks_per_node=2,
                    sections={"index": {"backend": "postgres", "dsn": dsn, "lease_seconds": 3},
                              "scrub": {"start_delay": 3600}, "lifecycle": {"interval": 3600}})
    c.start()
    try:
        second = holder_id(_second_gateway(c).split("//", 1)[1])
        names = list(leases.NAMES)
        index = Index(PgBackend(dsn))
        try:
            def holders():
                """Which gateway holds each lease (any of its worker processes: `<gateway>#<worker>`)."""
                with index.read() as ops:
                    return {n: (h or {}).get("holder", "").split("#")[0] for n, h in leases.holders(ops, names).items()}
            assert set(holders().values()) == {holder_id(f"127.0.0.1:{c.port}")}   # the first gateway took all
            c.signal("gateway")
            deadline = time.monotonic() + 30
            while set(holders().values()) != {second}:
                assert time.monotonic() < deadline, f"the leases did not all move within 30 s: {holders()}"
                time.sleep(0.2)
        finally:
            index.close()
        assert "lease repair taken by" in c.log("gateway2")
        _, status = pocket(c, "status", "--json")
        assert {n: lease["holder"].split("#")[0] for n, lease in status["leases"].items()} == {n: second for n in names}
        _, text = pocket(c, "status")
        assert f"Gateway {second} runs failures, lifecycle, repair, scrub" in text
    finally:
        c.close()


def test_a_gateway_killed_under_load_loses_nothing_acknowledged(pg_server, tmp_path):
    """Writers on two gateways sharing PostgreSQL and the nodes; one gateway is SIGKILLed
    mid-load; every PUT either gateway acknowledged reads back through the survivor."""
    c = ProcCluster(str(tmp_path / "cluster"), nodes=3, disks_per_node=2,
                    sections={"index": {"backend": "postgres", "dsn": pg_server.create_database()},
                              "scrub": {"enabled": False}, "lifecycle": {"interval": 0}})
    c.start()
    try:
        survivor = boto3.client("s3", endpoint_url=_second_gateway(c), aws_access_key_id=ACCESS_KEY,
                                aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                                config=BotoConfig(retries={"max_attempts": 1}))
        victim = c.client(retries=1)
        victim.create_bucket(Bucket="load")
        acked: dict[str, bytes] = {}
        lock, stop = threading.Lock(), threading.Event()

        def writer(name, client):
            n = 0
            while not stop.is_set():
                key, body = f"{name}/{n:05d}", _body(hash((name, n)) & 0xFFFFFF, 2000 + n % 7 * 9000)
                n += 1
                try:
                    client.put_object(Bucket="load", Key=key, Body=body)
                except Exception:
                    continue   # not acknowledged: the gateway died under it, or the connection did
                with lock:
                    acked[key] = body

        threads = [threading.Thread(target=writer, args=(f"{gw}{i}", cl))
                   for gw, cl in (("victim", victim), ("survivor", survivor)) for i in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 60:
            assert time.monotonic() < deadline, f"only {len(acked)} PUTs acknowledged in 60 s"
            time.sleep(0.05)
        c.signal("gateway")   # SIGKILL, mid-request for some writers
        settled = len(acked)
        while len(acked) < settled + 30:   # the survivor goes on taking writes
            assert time.monotonic() < deadline + 60, "the surviving gateway stopped taking writes"
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(60)
        assert any(k.startswith("victim") for k in acked) and any(k.startswith("survivor") for k in acked)
        for key, body in acked.items():
            assert survivor.get_object(Bucket="load", Key=key)["Body"].read() == body, key
        listed = set(_listing(survivor, "load")[0])
        assert set(acked) <= listed
    finally:
        c.close()
