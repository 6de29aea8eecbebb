"""The gateway's side of a migration out of S3: dual writes, reads from the authoritative
side, the journal when the other side is down, and every transition while a writer writes.

Real processes: a moto S3 server as the source (reached through a SourceLink the test can
cut), a Pocket cluster, and the `pocket migrate` commands. Where a step is mig-data's
(`pocket migrate copy` and `verify`), `copied_and_verified` records its outcome through
the state module instead: in these tests every object is written through the gateway
after `enable`, so there is nothing to backfill and both sides hold the same writes.
"""
from __future__ import annotations

import random
import threading
import time
import urllib.request
from contextlib import contextmanager

import pytest

from storage.config import load as load_config
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.migrate import state

from . import sources
from .harness import ProcCluster, pocket
from .sources import SourceLink

# Every source these tests run against: moto here, SeaweedFS too once mig-data's starter is in sources.py.
STARTERS = [sources.start_moto] + [getattr(sources, name) for name in ("start_seaweedfs",) if hasattr(sources, name)]

BUCKET = "moving"


@pytest.fixture(params=STARTERS, ids=lambda starter: starter.__name__.removeprefix("start_"))
def world(request, tmp_path, monkeypatch):
    source = request.param(str(tmp_path / "source"))
    link = SourceLink(int(source.endpoint.rsplit(":", 1)[1]))
    for name, value in source.credentials_env().items():   # the AWS chain of the gateway and commands
        monkeypatch.setenv(name, value)
    cluster = None
    try:
        cluster = ProcCluster(str(tmp_path / "cluster"), embedded=True).start()
        yield source, link, cluster
    finally:
        if cluster:
            cluster.close()
        link.close()
        source.close()


def migrate(c: ProcCluster, *args, ok=(0,)):
    return pocket(c, "migrate", *args, "--json", ok=ok)[1]


def enable(c: ProcCluster, link: SourceLink) -> dict:
    report = migrate(c, "enable", BUCKET, "--source-endpoint", link.endpoint, "--source-addressing", "path")
    assert report["buckets"][0]["state"] == "dual-write", report
    return report["buckets"][0]


@contextmanager
def index_of(c: ProcCluster):
    index = Index(LmdbBackend(load_config(c.config).index_path))
    try:
        yield index
    finally:
        index.close()


def copied_and_verified(c: ProcCluster) -> None:
    """What `pocket migrate copy` and a clean `pocket migrate verify` leave behind (mig-data's half)."""
    with index_of(c) as index:
        state.transition(index, BUCKET, state.BACKFILLED, "copy")
        state.transition(index, BUCKET, state.VERIFIED, "verify")
        m = state.load(index, BUCKET)
        m.last_verify = {"at": time.time(), "clean": True, "checked": 0, "mismatched": 0, "missing": 0}
        state.save(index, m)


def status(c: ProcCluster) -> dict:
    return migrate(c, "status", BUCKET)["buckets"][0]


def wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def metric(c: ProcCluster, series: str) -> float:
    with urllib.request.urlopen(c.endpoint + "/_pocket/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    raise AssertionError(f"{series} is not exported")


class Writer(threading.Thread):
    """Writes, overwrites and deletes a few keys through the gateway, remembering what it wrote."""

    KEYS = [f"w/{i} é+% {i}" for i in range(10)]

    def __init__(self, client, seed: int):
        super().__init__(daemon=True)
        self.client, self.rng = client, random.Random(seed)
        self.model: dict[str, tuple[bytes, dict, dict] | None] = {}
        self.turn = threading.Lock()      # held during one operation; `paused` takes it
        self.done = threading.Event()
        self.errors: list[str] = []
        self.ops = 0

    def step(self) -> None:
        key = self.rng.choice(self.KEYS)
        if self.model.get(key) is not None and self.rng.random() < 0.25:
            self.client.delete_object(Bucket=BUCKET, Key=key)
            self.model[key] = None
        else:
            body = self.rng.randbytes(self.rng.choice([0, 1, 2_000, 150_000, 600_000]))
            meta = {"op": str(self.ops)}
            tags = {"writer": f"t{self.ops}"} if self.rng.random() < 0.5 else {}
            self.client.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta,
                                   **({"Tagging": f"writer=t{self.ops}"} if tags else {}))
            self.model[key] = (body, meta, tags)
        self.ops += 1

    def run(self) -> None:
        while not self.done.is_set():
            with self.turn:
                try:
                    self.step()
                except Exception as e:   # noqa: BLE001 — the test asserts there were none
                    self.errors.append(repr(e))
                    return
            time.sleep(0.02)   # pacing: a steady writer, not a flood

    @contextmanager
    def paused(self):
        with self.turn:
            yield

    def stop(self) -> None:
        self.done.set()
        self.join(60)


def holds(client, model: dict, label: str) -> None:
    """`client`'s bucket holds exactly what the writer wrote: keys, bytes, metadata, tags."""
    listed = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        listed |= {o["Key"] for o in page.get("Contents", [])}
    assert listed == {k for k, v in model.items() if v is not None}, label
    for key, value in model.items():
        if value is None:
            continue
        body, meta, tags = value
        got = client.get_object(Bucket=BUCKET, Key=key)
        assert got["Body"].read() == body, f"{label}: {key}"
        assert got["Metadata"] == meta, f"{label}: {key}"
        tag_set = client.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
        assert {t["Key"]: t["Value"] for t in tag_set} == tags, f"{label}: {key}"


def test_writer_keeps_writing_through_every_transition(world):
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    enable(c, link)
    writer = Writer(gw, seed=9)
    writer.start()
    try:
        wait_for("writes in dual-write", lambda: writer.ops >= 30 or writer.errors)
        with writer.paused():
            holds(src, writer.model, "source, authoritative in dual-write")
            holds(gw, writer.model, "gateway in dual-write (reads from the source)")
        copied_and_verified(c)
        assert migrate(c, "cutover", BUCKET)["buckets"][0]["state"] == "cutover"
        ops = writer.ops
        wait_for("writes after cutover", lambda: writer.ops >= ops + 30 or writer.errors)
        with writer.paused():
            holds(gw, writer.model, "Pocket, authoritative after cutover")
            holds(src, writer.model, "source, mirrored after cutover")
        assert migrate(c, "rollback", BUCKET)["buckets"][0]["state"] == "dual-write"
        ops = writer.ops
        wait_for("writes after rollback", lambda: writer.ops >= ops + 20 or writer.errors)
        with writer.paused():
            holds(src, writer.model, "source after rollback")
        copied_and_verified(c)
        assert migrate(c, "cutover", BUCKET)["buckets"][0]["state"] == "cutover"
        with writer.paused():   # what the writer wrote up to detach is on the source, nothing after
            assert migrate(c, "detach", BUCKET)["buckets"][0]["state"] == "detached"
            at_detach = dict(writer.model)
        ops = writer.ops
        wait_for("writes after detach", lambda: writer.ops >= ops + 20 or writer.errors)
    finally:
        writer.stop()
    assert not writer.errors, writer.errors
    holds(gw, writer.model, "Pocket alone after detach")
    holds(src, at_detach, "source left as it was at detach")
    assert status(c)["journal"] == 0


def test_multipart_upload_begun_before_cutover_completes_on_both_sides(world):
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    enable(c, link)
    rng = random.Random(5)
    parts = [rng.randbytes(5 << 20), rng.randbytes(5 << 20), rng.randbytes(123_457)]
    upload = gw.create_multipart_upload(Bucket=BUCKET, Key="big", Metadata={"kind": "multi"},
                                        Tagging="stage=begun%20before&n=3")["UploadId"]
    done = [{"PartNumber": 1, "ETag": gw.upload_part(Bucket=BUCKET, Key="big", UploadId=upload, PartNumber=1,
                                                     Body=parts[0])["ETag"]}]
    copied_and_verified(c)
    migrate(c, "cutover", BUCKET)          # the upload began on the source: it finishes there too
    for n in (2, 3):
        done.append({"PartNumber": n, "ETag": gw.upload_part(Bucket=BUCKET, Key="big", UploadId=upload,
                                                             PartNumber=n, Body=parts[n - 1])["ETag"]})
    etag = gw.complete_multipart_upload(Bucket=BUCKET, Key="big", UploadId=upload,
                                        MultipartUpload={"Parts": done})["ETag"]
    whole = b"".join(parts)
    for client, side in ((gw, "Pocket"), (src, "source")):
        got = client.get_object(Bucket=BUCKET, Key="big")
        assert got["Body"].read() == whole, side
        assert got["ETag"] == etag and etag.endswith('-3"'), side
        assert got["Metadata"] == {"kind": "multi"}, side
        tags = client.get_object_tagging(Bucket=BUCKET, Key="big")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"stage": "begun before", "n": "3"}, side
    assert status(c)["journal"] == 0


def test_enable_carries_configuration_and_reads_come_from_the_source(world):
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    src.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    src.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["https://app.example"], "MaxAgeSeconds": 600}]})
    src.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "ops"}]})
    old = random.Random(3).randbytes(70_000)
    src.put_object(Bucket=BUCKET, Key="before enable/ü + %", Body=old, Metadata={"from": "source"},
                   CacheControl="max-age=60", Tagging="a=1")
    report = enable(c, link)
    assert report["created"] and "versioning Enabled" in report["carried"] and "cors" in report["carried"]
    assert any("bucket tags" in line for line in report["not_carried"]), report
    assert gw.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert gw.get_bucket_cors(Bucket=BUCKET)["CORSRules"][0]["AllowedOrigins"] == ["https://app.example"]

    # not copied yet: answered by the source, headers, metadata and tags included
    got = gw.get_object(Bucket=BUCKET, Key="before enable/ü + %", Range="bytes=1000-1999")
    assert got["Body"].read() == old[1000:2000]
    head = gw.head_object(Bucket=BUCKET, Key="before enable/ü + %")
    assert head["Metadata"] == {"from": "source"} and head["CacheControl"] == "max-age=60"
    assert gw.get_object_tagging(Bucket=BUCKET, Key="before enable/ü + %")["TagSet"] == [{"Key": "a", "Value": "1"}]
    listed = gw.list_objects_v2(Bucket=BUCKET, Prefix="before", Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["before enable/"]
    put = gw.put_object(Bucket=BUCKET, Key="after", Body=b"new")
    assert put["VersionId"] in {v["VersionId"] for v in src.list_object_versions(Bucket=BUCKET)["Versions"]}
    assert status(c)["dirty_keys"] == 1
