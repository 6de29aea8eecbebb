"""`pocket migrate copy` handing small versions to the running gateway
(storage/migrate/gateway_copy.py): only requests signed with the cluster secret, with the
body they were signed with, and seen once are taken; the copy writes by itself when the
gateway goes away mid-copy, and loses nothing."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from storage.migrate import gateway_copy
from storage.migrate.version_ids import internal_ids
from storage.migrate.copier import Write

from .harness import CLUSTER_SECRET, REPO, ProcCluster, wait_for
from .migrate_data import seed_checksums, seed_versioned, snapshot
from .sources import pocket_migrate, start_moto

LAST_MODIFIED = 1_600_000_000.0      # 2020-09-13: what the copy claims the source said


@pytest.fixture
def moto(tmp_path):
    source = start_moto(str(tmp_path / "moto"))
    yield source
    source.close()


def _write(key: str, data: bytes) -> Write:
    attrs = {"content_type": "text/x-copied", "meta": {"origin": "s3"}, "headers": {"Cache-Control": "no-cache"},
             "owner": "", "created": LAST_MODIFIED, "migrated_from": "null", "copied": LAST_MODIFIED + 5,
             "tags": {"team": "blue"}}
    want = {"Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()}
    return Write("target", key, len(data), want, attrs, internal_ids([{"last_modified": LAST_MODIFIED}])[0])


def _put(c: ProcCluster, headers: dict, body: bytes) -> tuple[int, bytes]:
    """One request on a connection of its own (the two gateway workers take turns)."""
    req = urllib.request.Request(c.endpoint + gateway_copy.PATH, data=body, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _keys(c: ProcCluster, bucket: str = "target") -> list[str]:
    return [o["Key"] for o in c.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_only_signed_fresh_requests_with_their_own_body_are_stored(embedded):
    embedded.client().create_bucket(Bucket="target")
    data = random.Random(7).randbytes(4096)
    write = _write("kept.bin", data)

    headers, body = gateway_copy.signed_request(CLUSTER_SECRET, [(write, data)])
    forged = gateway_copy.signed_request("not-the-cluster-secret-0123456789abcdef", [(write, data)])
    tampered = body[:200] + bytes([body[200] ^ 1]) + body[201:]
    refused = {"unsigned": ({"Content-Type": "application/octet-stream"}, body),
               "wrong secret": forged, "tampered body": (headers, tampered)}
    for what, (h, b) in refused.items():
        status, answer = _put(embedded, h, b)
        assert (status, b"<Code>AccessDenied</Code>" in answer) == (403, True), (what, status, answer)
    assert _keys(embedded) == []

    # sent twice at once: one is stored, the other refused before it writes anything (both
    # would write archives of the same names; removing the refused one's took the other's)
    with ThreadPoolExecutor(2) as pool:
        answers = sorted(pool.map(lambda _: _put(embedded, headers, body), range(2)))
    assert [status for status, _ in answers] == [200, 403], answers
    got = embedded.client().get_object(Bucket="target", Key="kept.bin")
    assert got["Body"].read() == data and got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert got["LastModified"].timestamp() == LAST_MODIFIED
    assert (got["ContentType"], got["Metadata"], got["CacheControl"]) == ("text/x-copied", {"origin": "s3"}, "no-cache")
    tags = embedded.client().get_object_tagging(Bucket="target", Key="kept.bin")["TagSet"]
    assert tags == [{"Key": "team", "Value": "blue"}]

    # replayed: refused by either worker process, and after a restart (the nonce is in the index)
    embedded.client().delete_object(Bucket="target", Key="kept.bin")
    for _ in range(4):
        status, answer = _put(embedded, headers, body)
        assert status == 403 and b"<Code>AccessDenied</Code>" in answer
    embedded.signal("gateway", signal.SIGKILL)
    embedded.start_gateway()
    status, answer = _put(embedded, headers, body)
    assert status == 403 and b"<Code>AccessDenied</Code>" in answer
    assert _keys(embedded) == []


def test_a_batch_stores_each_version_alone_and_a_malformed_one_stores_nothing(embedded):
    """Versions travel in batches: one whose body does not match its MD5 fails alone (the
    copy then writes it itself and reports the error); a batch that does not parse is
    refused whole with 400; and a Sender given many versions at once sends few requests."""
    c = embedded.client()
    c.create_bucket(Bucket="target")
    rnd = random.Random(11)
    bodies = {f"batch/{i}": rnd.randbytes(3000 + i) for i in range(3)}
    batch = [(_write(key, data), data) for key, data in bodies.items()]
    bad = rnd.randbytes(2000)
    batch.insert(1, (_write("batch/bad", bad), bad[:-1] + bytes([bad[-1] ^ 1])))   # MD5 of other bytes
    marker = Write("target", "batch/gone", marker={"version_id": internal_ids([{"last_modified": LAST_MODIFIED}])[0],
                                                    "created": LAST_MODIFIED, "versioned": False})
    batch.append((marker, b""))
    status, answer = _put(embedded, *gateway_copy.signed_request(CLUSTER_SECRET, batch))
    assert status == 200, answer
    results = json.loads(answer)
    assert [r.get("error") for r in results] == [None, "BadDigest", None, None, None], results
    for (key, data), result in zip(bodies.items(), [results[0], results[2], results[3]]):
        got = c.get_object(Bucket="target", Key=key)
        assert got["Body"].read() == data and got["ETag"] == f'"{result["etag"]}"' == f'"{hashlib.md5(data).hexdigest()}"'
    assert sorted(_keys(embedded)) == sorted(bodies)

    # a batch whose last version claims more bytes than follow, and one of too many versions
    short = _write("batch/short", b"x" * 100)
    too_many = [(_write(f"many/{i}", bytes([i])), bytes([i])) for i in range(gateway_copy.MAX_BATCH + 1)]
    for what, items in {"short": [(_write("batch/ok", b"fine"), b"fine"), (short, b"x" * 99)],
                        "too many": too_many}.items():
        status, answer = _put(embedded, *gateway_copy.signed_request(CLUSTER_SECRET, items))
        assert status == 400 and b"<Code>InvalidRequest</Code>" in answer, (what, status, answer)
    assert sorted(_keys(embedded)) == sorted(bodies)

    async def hand_over(n: int):
        sender = gateway_copy.Sender(embedded.endpoint, CLUSTER_SECRET)
        try:
            sent = {f"sender/{i:02d}": rnd.randbytes(500 + i) for i in range(n)}
            answers = await asyncio.gather(*(sender.send(_write(k, d), d) for k, d in sent.items()))
            return sent, answers, sender.requests, sender.written
        finally:
            await sender.close()
    sent, answers, requests, written = asyncio.run(hand_over(40))
    assert written == 40 and requests < 10, (written, requests)
    for (key, data), answer in zip(sent.items(), answers):
        assert answer["etag"] == hashlib.md5(data).hexdigest()
        assert c.get_object(Bucket="target", Key=key)["Body"].read() == data


def test_two_copy_workers_hand_over_versions_checksums_and_markers(embedded, moto):
    """moto's UUID version ids, delete markers, tags, metadata and x-amz-checksum-* arrive as
    the copy read them; `status` adds up what both workers handed over."""
    s3 = moto.client()
    seed_versioned(s3, "history")
    seed_checksums(s3, "sums")
    _, report = pocket_migrate(embedded, moto, "copy", "history", "sums", "--workers", "2", "--json")
    assert report["ok"], report
    # history: six versions and two delete markers; sums: two single PUTs (not the multipart one)
    handed = [b["written_via_gateway"] for b in report["buckets"]]
    assert handed == [8, 2]
    _, status = pocket_migrate(embedded, moto, "status", "history", "sums", "--json")
    assert [b["counters"]["written_via_gateway"] for b in status["buckets"]] == handed
    _, text = pocket_migrate(embedded, moto, "status", "history")
    assert "8 of them stored by the running gateway" in text
    for bucket in ("history", "sums"):
        assert snapshot(embedded.client(), bucket) == snapshot(s3, bucket)
    head = embedded.client().head_object(Bucket="sums", Key="crc64", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == s3.head_object(Bucket="sums", Key="crc64",
                                                       ChecksumMode="ENABLED")["ChecksumCRC64NVME"]


def test_copy_writes_by_itself_once_the_gateway_stops_mid_copy(embedded, moto):
    s3 = moto.client()
    s3.create_bucket(Bucket="many")
    embedded.client().create_bucket(Bucket="many")
    for i in range(60):
        s3.put_object(Bucket="many", Key=f"obj/{i:03d}", Body=random.Random(i).randbytes(1000 + i))
    copy = subprocess.Popen([sys.executable, "-m", "cli", "migrate", "copy", "many", "--json", "--workers", "1",
                             "--rate", "8KB", "--config", embedded.config, "--source-endpoint", moto.endpoint],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **moto.credentials_env()})
    try:
        wait_for("a few objects stored by the gateway", lambda: len(_keys(embedded, "many")) >= 5)
        # one batch is on its way at a time, and a batch commits whole: once a later one
        # has landed, the copy has had the answer for every version seen before it (the
        # gateway killed between a commit and its answer leaves that batch to the copy)
        answered = len(_keys(embedded, "many"))
        wait_for("the next batch stored by the gateway", lambda: len(_keys(embedded, "many")) > answered)
        embedded.signal("gateway", signal.SIGKILL)
        out, err = copy.communicate(timeout=120)
    finally:
        if copy.poll() is None:
            copy.kill()
            copy.wait()
    assert copy.returncode == 0, err
    bucket = json.loads(out)["buckets"][0]
    assert bucket["copied"] == 60 and answered <= bucket["written_via_gateway"] < 60, (answered, bucket)
    embedded.start_gateway()
    assert snapshot(embedded.client(), "many") == snapshot(s3, "many")
