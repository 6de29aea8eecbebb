"""Before cutover, a key verified equal since its last write is read from Pocket; any other
key is still read from the source (the authoritative side).

Real processes: moto as the source behind a SourceLink the test cuts, an embedded Pocket,
and the `pocket migrate` commands. With the source unreachable, a verified key is still
served (by Pocket, with the source's bytes), a key written through the gateway after the
verify is not (its read goes to the source and fails), and neither is a key the verify
found different.
"""
from __future__ import annotations

import random

import pytest
from botocore.exceptions import ClientError

from .harness import QUIET, metric, pocket
from .sources import enable, moto_and_pocket, moto_behind_link

BUCKET = "moving"


def _status_of(call) -> int:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_verified_keys_are_read_from_pocket_and_written_ones_from_the_source(tmp_path, monkeypatch):
    with moto_behind_link(str(tmp_path), monkeypatch, embedded=True, sections=QUIET) as (source, link, c):
        _verified_reads(source, link, c)


def _verified_reads(source, link, c) -> None:
    src, rnd = source.client(), random.Random(17)
    src.create_bucket(Bucket=BUCKET)
    bodies = {f"k{i} é+%": rnd.randbytes(3000 + i) for i in range(4)}
    for key, body in bodies.items():
        src.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata={"n": key[:2]})
    enable(c, BUCKET, link.endpoint)
    gw = c.client()
    # before any verify every read is the source's: cut it and the read fails
    link.cut()
    assert _status_of(lambda: gw.get_object(Bucket=BUCKET, Key="k0 é+%")) == 503
    link.restore()
    pocket(c, "migrate", "copy", BUCKET, "--json")
    src.put_object(Bucket=BUCKET, Key="k3 é+%", Body=b"changed at the source alone")   # verify finds it
    report = pocket(c, "migrate", "verify", BUCKET, "--json", ok=(1,))[1]
    assert {f["key"] for f in report["buckets"][0]["findings"]} == {"k3 é+%"}
    gw.put_object(Bucket=BUCKET, Key="k1 é+%", Body=b"written after the verify")

    link.cut()
    for key in ("k0 é+%", "k2 é+%"):          # verified equal, not written since: Pocket answers
        got = gw.get_object(Bucket=BUCKET, Key=key)
        assert got["Body"].read() == bodies[key] and got["Metadata"] == {"n": key[:2]}
        assert gw.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(bodies[key])
    for key in ("k1 é+%", "k3 é+%"):          # written since / found different: the source's to answer
        assert _status_of(lambda: gw.get_object(Bucket=BUCKET, Key=key)) == 503
    link.restore()
    assert gw.get_object(Bucket=BUCKET, Key="k1 é+%")["Body"].read() == b"written after the verify"
    assert gw.get_object(Bucket=BUCKET, Key="k3 é+%")["Body"].read() == b"changed at the source alone"


def test_a_key_changed_at_the_source_after_the_verify_is_read_from_the_source(tmp_path, monkeypatch):
    """An application still writing to S3 directly overwrites one key and deletes another
    after the verify: the gateway answers with the source's new bytes and a 404, never
    Pocket's verified-but-stale copy, while an untouched key is still Pocket's to serve.
    Rollback before cutover is a no-op that says so (exit 0)."""
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True, sections=QUIET) as (source, c):
        src, rnd = source.client(), random.Random(23)
        src.create_bucket(Bucket=BUCKET)
        bodies = {key: rnd.randbytes(4000 + i) for i, key in enumerate(("same", "overwritten", "deleted"))}
        for key, body in bodies.items():
            src.put_object(Bucket=BUCKET, Key=key, Body=body)
        enable(c, BUCKET, source.endpoint)
        rolled = pocket(c, "migrate", "rollback", BUCKET, "--json")[1]["buckets"][0]   # exit 0
        assert rolled["ok"] and rolled["changed"] is False and rolled["state"] == "dual-write"
        assert "already authoritative" in rolled["note"]
        pocket(c, "migrate", "copy", BUCKET, "--json")
        assert pocket(c, "migrate", "verify", BUCKET, "--json")[1]["clean"]

        newer = rnd.randbytes(len(bodies["overwritten"]))        # same size: only the ETag tells
        src.put_object(Bucket=BUCKET, Key="overwritten", Body=newer)
        src.delete_object(Bucket=BUCKET, Key="deleted")
        at_source = src.head_object(Bucket=BUCKET, Key="overwritten")
        gw, series = c.client(), f'bucket="{BUCKET}"'
        verified = metric(c.endpoint, "pocket_migrate_verified_reads_total", series)
        from_source = metric(c.endpoint, "pocket_migrate_source_reads_total", series)

        assert gw.get_object(Bucket=BUCKET, Key="overwritten")["Body"].read() == newer
        head = gw.head_object(Bucket=BUCKET, Key="overwritten")
        assert head["ETag"] == at_source["ETag"] and head["LastModified"] == at_source["LastModified"]
        got = gw.get_object(Bucket=BUCKET, Key="overwritten", Range="bytes=1000-2999")
        assert got["Body"].read() == newer[1000:3000] and got["ETag"] == at_source["ETag"]
        assert _status_of(lambda: gw.get_object(Bucket=BUCKET, Key="deleted")) == 404
        assert _status_of(lambda: gw.head_object(Bucket=BUCKET, Key="deleted")) == 404
        assert metric(c.endpoint, "pocket_migrate_verified_reads_total", series) == verified
        assert metric(c.endpoint, "pocket_migrate_source_reads_total", series) >= from_source + 5

        assert gw.get_object(Bucket=BUCKET, Key="same")["Body"].read() == bodies["same"]
        assert gw.get_object(Bucket=BUCKET, Key="same", Range="bytes=7-99")["Body"].read() == bodies["same"][7:100]
        assert metric(c.endpoint, "pocket_migrate_verified_reads_total", series) == verified + 2
        listed = {o["Key"]: o["ETag"] for o in gw.list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert listed == {"same": gw.head_object(Bucket=BUCKET, Key="same")["ETag"], "overwritten": at_source["ETag"]}
