"""The gateway's side of a migration out of S3: dual writes, reads from the authoritative
side, the journal when the other side is down, and every transition while a writer writes.

Real processes: a moto S3 server as the source (reached through a SourceLink the test can
cut), a Pocket cluster, and the `pocket migrate` commands. Where a step is mig-data's
(`pocket migrate copy` and `verify`), `copied_and_verified` records its outcome through
the state module instead: in these tests every object is written through the gateway
after `enable`, so there is nothing to backfill and both sides hold the same writes.
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time
import urllib.request
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError

from storage.config import load as load_config
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.migrate import state

from . import sources
from .harness import REPO, ProcCluster, pocket, wait_http
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


def test_source_unreachable_fails_before_cutover_and_is_journaled_after(world):
    source, link, c = world
    src, gw = source.client(), c.client(retries=1)
    src.create_bucket(Bucket=BUCKET)
    enable(c, link)
    first = random.Random(1).randbytes(300_000)
    gw.put_object(Bucket=BUCKET, Key="kept", Body=first)

    link.cut()
    with pytest.raises(ClientError) as e:
        gw.put_object(Bucket=BUCKET, Key="kept", Body=b"never acknowledged")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    with pytest.raises(ClientError) as e:
        gw.get_object(Bucket=BUCKET, Key="kept")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    link.restore()
    assert gw.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == first
    assert src.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == first

    copied_and_verified(c)
    migrate(c, "cutover", BUCKET)
    link.cut()
    later = random.Random(2).randbytes(200_000)
    gw.put_object(Bucket=BUCKET, Key="kept", Body=later)          # Pocket is authoritative now
    gw.put_object(Bucket=BUCKET, Key="new", Body=later[:1000])
    gw.delete_object(Bucket=BUCKET, Key="new")
    assert gw.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == later
    assert status(c)["journal"] >= 3
    assert metric(c, 'pocket_migrate_writes_total{bucket="moving",outcome="journaled",side="source"}') >= 3
    assert metric(c, 'pocket_migrate_journal_entries{bucket="moving"}') >= 3
    refused = migrate(c, "rollback", BUCKET, ok=(1,))["buckets"][0]
    assert not refused["ok"] and "not reached the source" in refused["error"]

    c.signal("gateway", signal.SIGKILL)       # the journal is in the index: a crash loses none of it
    c.start_gateway()
    wait_http(c.endpoint + "/_pocket/ready")
    assert status(c)["journal"] >= 3
    link.restore()
    wait_for("the journal to drain", lambda: status(c)["journal"] == 0)
    assert src.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == later
    assert "new" not in {o["Key"] for o in src.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert migrate(c, "rollback", BUCKET)["buckets"][0]["state"] == "dual-write"
    assert gw.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == later


def test_multipart_upload_begun_before_cutover_completes_on_both_sides(world):
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    enable(c, link)
    rng = random.Random(5)
    parts = [rng.randbytes(5 << 20), rng.randbytes(5 << 20), rng.randbytes(123_457)]
    upload = gw.create_multipart_upload(Bucket=BUCKET, Key="big", Metadata={"kind": "multi"})["UploadId"]
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


def _built(command: str) -> bool:
    with open(os.path.join(REPO, "cli", "migrate.py"), encoding="utf-8") as f:
        return f'_not_built("{command}")' not in f.read()


def seed(src, rng: random.Random) -> dict:
    """Objects already at the source before enable (what `copy` must move): sizes from 0 bytes to
    a multipart object with an unusual part size, keys with unicode, spaces, % and +."""
    model = {}
    for n, size in enumerate([0, 1, 1_000, 131_073, 400_000]):
        key = f"seed/{n} ü %2B+{n}"
        body, meta, tags = rng.randbytes(size), {"seeded": str(n)}, {"n": str(n)}
        src.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta, Tagging=f"n={n}",
                       ContentDisposition=f'attachment; filename="{n}.bin"')
        model[key] = (body, meta, tags)
    parts = [rng.randbytes((5 << 20) + 3), rng.randbytes(77_777)]
    upload = src.create_multipart_upload(Bucket=BUCKET, Key="seed/multi part", Metadata={"seeded": "multi"})
    done = [{"PartNumber": i, "ETag": src.upload_part(Bucket=BUCKET, Key="seed/multi part", PartNumber=i,
                                                      UploadId=upload["UploadId"], Body=p)["ETag"]}
            for i, p in enumerate(parts, 1)]
    src.complete_multipart_upload(Bucket=BUCKET, Key="seed/multi part", UploadId=upload["UploadId"],
                                  MultipartUpload={"Parts": done})
    model["seed/multi part"] = (b"".join(parts), {"seeded": "multi"}, {})
    return model


@pytest.mark.skipif(not (_built("copy") and _built("verify")),
                    reason="`pocket migrate copy` and `verify` are mig-data's half: this runs once both are merged")
def test_end_to_end_with_copy_and_verify(world):
    """plan-less: enable -> copy -> verify -> cutover -> rollback -> copy/verify -> cutover -> detach,
    with the writer writing throughout; ETags of copied objects (multipart too) equal the source's."""
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    seeded = seed(src, random.Random(12))
    etags = {k: src.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in seeded}
    enable(c, link)
    writer = Writer(gw, seed=13)
    writer.model.update(seeded)
    writer.start()

    def copy_and_verify():
        migrate(c, "copy", BUCKET)
        with writer.paused():
            report = migrate(c, "verify", BUCKET)
        assert status(c)["state"] == "verified", report

    try:
        copy_and_verify()
        # the dashboard's progress panel: what the backfill copied, as the running gateway exports it
        assert metric(c, f'pocket_migrate_objects_copied{{bucket="{BUCKET}"}}') == status(c)["objects_copied"] > 0
        assert migrate(c, "cutover", BUCKET)["buckets"][0]["state"] == "cutover"
        ops = writer.ops
        wait_for("writes after cutover", lambda: writer.ops >= ops + 20 or writer.errors)
        with writer.paused():
            holds(gw, writer.model, "Pocket after cutover")
            holds(src, writer.model, "source mirrored after cutover")
            for key, etag in etags.items():
                assert gw.head_object(Bucket=BUCKET, Key=key)["ETag"] == etag, key
        assert migrate(c, "rollback", BUCKET)["buckets"][0]["state"] == "dual-write"
        copy_and_verify()
        assert migrate(c, "cutover", BUCKET)["buckets"][0]["state"] == "cutover"
        with writer.paused():
            assert migrate(c, "detach", BUCKET)["buckets"][0]["state"] == "detached"
            at_detach = dict(writer.model)
    finally:
        writer.stop()
    assert not writer.errors, writer.errors
    holds(gw, writer.model, "Pocket alone after detach")
    holds(src, at_detach, "source as it was at detach")


def test_copy_tagging_and_multi_delete_reach_both_sides(world):
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    enable(c, link)
    body = random.Random(21).randbytes(250_000)
    gw.put_object(Bucket=BUCKET, Key="orig", Body=body, Metadata={"v": "1"})
    gw.copy_object(Bucket=BUCKET, Key="copy 1", CopySource={"Bucket": BUCKET, "Key": "orig"})
    gw.copy_object(Bucket=BUCKET, Key="copy 2", CopySource={"Bucket": BUCKET, "Key": "orig"},
                   MetadataDirective="REPLACE", Metadata={"v": "2"}, ContentType="text/x-test")
    gw.put_object_tagging(Bucket=BUCKET, Key="copy 1", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    gw.put_object(Bucket=BUCKET, Key="gone a", Body=b"a")
    gw.put_object(Bucket=BUCKET, Key="gone b", Body=b"b")
    result = gw.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "gone a"}, {"Key": "gone b"}]})
    assert len(result["Deleted"]) == 2 and not result.get("Errors")
    copied_and_verified(c)
    migrate(c, "cutover", BUCKET)     # from here on the gateway reads Pocket: both sides are checked
    for client, side in ((src, "source"), (gw, "Pocket")):
        keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert keys == {"orig", "copy 1", "copy 2"}, side
        c2 = client.get_object(Bucket=BUCKET, Key="copy 2")
        assert c2["Body"].read() == body and c2["Metadata"] == {"v": "2"} and c2["ContentType"] == "text/x-test", side
        assert client.get_object_tagging(Bucket=BUCKET, Key="copy 1")["TagSet"] == [{"Key": "t", "Value": "1"}], side
    gw.put_object_tagging(Bucket=BUCKET, Key="orig", Tagging={"TagSet": [{"Key": "after", "Value": "cutover"}]})
    gw.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "copy 2"}]})
    assert src.get_object_tagging(Bucket=BUCKET, Key="orig")["TagSet"] == [{"Key": "after", "Value": "cutover"}]
    assert {o["Key"] for o in src.list_objects_v2(Bucket=BUCKET)["Contents"]} == {"orig", "copy 1"}
