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

from .harness import QUIET, pocket
from .sources import SourceLink, enable, moto_and_pocket

BUCKET = "moving"


def _status_of(call) -> int:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_verified_keys_are_read_from_pocket_and_written_ones_from_the_source(tmp_path, monkeypatch):
    for name, value in SourceLink.ENV.items():
        monkeypatch.setenv(name, value)
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True,
                         sections=QUIET) as (source, c):
        link = SourceLink(int(source.endpoint.rsplit(":", 1)[1]))
        try:
            _verified_reads(source, link, c)
        finally:
            link.close()


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
