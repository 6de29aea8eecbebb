"""Client work against a cluster that may die under it, and the checks that follow.

Every key belongs to one worker thread, so the operations on a key are sequential and
the test knows, per key, the last state a client saw acknowledged (HTTP 200) and the
states of any later operations whose outcome it never learned (the gateway died
mid-request, or answered with an error). After a crash the key must be in one of
those states: acknowledged bytes are never lost, and an unacknowledged PUT is either
whole or absent, never partial.
"""
from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from storage import layout
from storage.durability.sets import live_sets
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend

from .archives import archive_parts

GONE = "<deleted>"
MIN_PART = 5 << 20


def etag_of(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


@dataclass
class KeyState:
    acked: object = GONE             # bytes, or GONE
    etag: str | None = None
    maybe: list = field(default_factory=list)   # states of operations with unknown outcome

    def allowed(self) -> list:
        return [self.acked, *self.maybe]


@dataclass
class Ledger:
    """What the clients were told, shared by the worker threads (each owns its keys)."""
    bucket: str
    keys: dict[str, KeyState] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)     # upload id -> key, created and not finished
    maybe_uploads: set[str] = field(default_factory=set)      # keys with a Create of unknown outcome
    history: dict[str, list[str]] = field(default_factory=dict)   # key -> what happened, for failures
    acks: int = 0
    unknown: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, key: str, value, etag: str | None = None) -> None:
        with self.lock:
            self.keys[key] = KeyState(value, etag if value is not GONE else None)
            self.acks += 1
            self.note(key, f"acked {_desc(value)}")

    def attempt(self, key: str, value) -> None:
        with self.lock:
            self.keys.setdefault(key, KeyState()).maybe.append(value)
            self.unknown += 1
            self.note(key, f"unknown {_desc(value)}")

    def note(self, key: str, what: str) -> None:
        self.history.setdefault(key, []).append(f"{time.time():.3f} {what}")

    def explain(self, keys) -> str:
        return "\n".join(f"{k}: {self.history.get(k)}" for k in keys)


class Worker(threading.Thread):
    """Random PUTs (small and multi-segment), overwrites, deletes and multipart uploads
    on its own keys until `stop` is set or the gateway stops answering."""

    def __init__(self, cluster, ledger: Ledger, name: str, rng: random.Random, stop: threading.Event,
                 big: int = 300_000, multipart: bool = True):
        super().__init__(daemon=True)
        self.s3 = cluster.client(retries=1)
        self.ledger, self.prefix, self.rng, self.stop = ledger, name, rng, stop
        self.big, self.multipart = big, multipart
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except _Dead:
            pass
        except BaseException as e:  # an assertion about a reply: the test reports it
            self.failure = e

    def _work(self) -> None:
        while not self.stop.is_set():
            key = f"{self.prefix}/k{self.rng.randrange(6)}"
            roll = self.rng.random()
            if roll < 0.15 and key in self.ledger.keys:
                self._delete_key(key)
            elif roll < 0.25 and self.multipart:
                self._multipart(key)
            else:
                size = self.rng.choice([1024, 1024, 3000, self.big, self.big + 12345])
                self._put(key, os.urandom(size))

    def _call(self, fn, key: str, value, **kw):
        """Run one S3 call; record an unknown outcome and raise _Dead if there is none."""
        try:
            return fn(**kw)
        except ClientError as e:
            self.ledger.attempt(key, value)
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            if status < 500:
                raise AssertionError(f"{fn.__name__} {key} refused: {e}") from None
            time.sleep(0.05)
            raise _Dead() if self.stop.is_set() else _Skip()
        except Exception:
            self.ledger.attempt(key, value)
            raise _Dead() from None

    def _put(self, key: str, data: bytes) -> None:
        try:
            r = self._call(self.s3.put_object, key, data, Bucket=self.ledger.bucket, Key=key, Body=data)
        except _Skip:
            return
        assert r["ETag"] == etag_of(data), key
        self.ledger.ack(key, data, r["ETag"])

    def _delete_key(self, key: str) -> None:
        try:
            self._call(self.s3.delete_object, key, GONE, Bucket=self.ledger.bucket, Key=key)
        except _Skip:
            return
        self.ledger.ack(key, GONE)

    def _multipart(self, key: str) -> None:
        bucket = self.ledger.bucket
        try:
            uid = self.s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        except ClientError:
            self.ledger.maybe_uploads.add(key)
            return
        except Exception:
            self.ledger.maybe_uploads.add(key)
            raise _Dead() from None
        with self.ledger.lock:
            self.ledger.uploads[uid] = key
            self.ledger.note(key, f"upload {uid}")
        sizes = [MIN_PART, 2000] if self.rng.random() < 0.2 else [self.rng.choice([1500, self.big])]
        chunks = [os.urandom(s) for s in sizes]
        etags = []
        for number, chunk in enumerate(chunks, 1):
            try:
                r = self.s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=number, Body=chunk)
            except ClientError:
                return
            except Exception:
                raise _Dead() from None
            etags.append(r["ETag"])
        data = b"".join(chunks)
        parts = [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, 1)]
        try:
            r = self._call(self.s3.complete_multipart_upload, key, data, Bucket=bucket, Key=key, UploadId=uid,
                           MultipartUpload={"Parts": parts})
        except _Skip:
            return
        with self.ledger.lock:
            del self.ledger.uploads[uid]
        self.ledger.ack(key, data, r["ETag"])


class _Dead(Exception):
    """The gateway stopped answering: this worker is done for the round."""


class _Skip(Exception):
    """The server refused this operation (5xx); carry on with the next."""


def run_round(cluster, ledger: Ledger, rng: random.Random, workers: int, kill_after: float, kill, **kw) -> None:
    """Start `workers` threads, call `kill()` after `kill_after` seconds while they run, join them."""
    stop = threading.Event()
    threads = [Worker(cluster, ledger, f"w{rng.randrange(1 << 30):x}", random.Random(rng.random()), stop, **kw)
               for _ in range(workers)]
    for t in threads:
        t.start()
    time.sleep(kill_after)
    kill()
    stop.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a client thread hung"
        assert t.failure is None, repr(t.failure)


# checks --------------------------------------------------------------------------------
def read_state(s3, bucket: str, key: str):
    """(bytes or GONE, ETag) as a client sees the key now."""
    try:
        r = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchKey", (key, e.response)
        return GONE, None
    return r["Body"].read(), r["ETag"]


def check_keys(s3, ledger: Ledger) -> dict[str, object]:
    """Every key is in a state a client could expect; listing and GET agree. Returns key -> state."""
    listed = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ledger.bucket):
        for o in page.get("Contents", []):
            listed[o["Key"]] = o
    seen = {}
    for key in sorted(set(ledger.keys) | set(listed)):
        got, etag = read_state(s3, ledger.bucket, key)
        state = ledger.keys.get(key)
        assert state is not None, f"{key} is listed but no client ever wrote it"
        ok = [v for v in state.allowed() if v is got or (v is not GONE and got is not GONE and v == got)]
        assert ok, (f"{key}: read back {_desc(got)}; acknowledged {_desc(state.acked)}, "
                    f"unacknowledged attempts {[_desc(v) for v in state.maybe]}")
        if got is not GONE:
            assert key in listed, f"{key} reads back but is not listed"
            assert listed[key]["Size"] == len(got) and listed[key]["ETag"] == etag, key
            if not state.maybe:
                assert etag == state.etag, f"{key}: ETag {etag}, acknowledged {state.etag}"
        else:
            assert key not in listed, f"{key} is listed but GET says NoSuchKey"
        seen[key] = got
    return seen


def check_uploads(s3, ledger: Ledger) -> int:
    """Every listed upload is one a client created and can still be completed or aborted;
    returns how many were listed (each is finished here: completed or aborted)."""
    listed = s3.list_multipart_uploads(Bucket=ledger.bucket).get("Uploads", [])
    for n, up in enumerate(listed):
        uid, key = up["UploadId"], up["Key"]
        assert uid in ledger.uploads or key in ledger.maybe_uploads, f"upload {uid} of {key} listed, but none was open"
        parts = s3.list_parts(Bucket=ledger.bucket, Key=key, UploadId=uid).get("Parts", [])
        if n % 2 == 0 or not parts:
            s3.abort_multipart_upload(Bucket=ledger.bucket, Key=key, UploadId=uid)
            ledger.note(key, f"aborted leftover upload {uid}")
        else:
            done = s3.complete_multipart_upload(Bucket=ledger.bucket, Key=key, UploadId=uid, MultipartUpload={
                "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]})
            got, etag = read_state(s3, ledger.bucket, key)
            assert etag == done["ETag"] and len(got) == sum(p["Size"] for p in parts)
            ledger.ack(key, got, etag)
        ledger.uploads.pop(uid, None)
    assert not s3.list_multipart_uploads(Bucket=ledger.bucket).get("Uploads")
    return len(listed)


def expected_archives(index_path: str) -> set[tuple[str, str]]:
    """(disk, archive name) of every fragment archive the index references (gateway stopped)."""
    index = Index(LmdbBackend(index_path))
    try:
        want = set()
        volumes = {v["id"]: v for v in index.get_volumes()}
        for rec in live_sets(index):
            disks = volumes[rec["volume"]]["disks"]
            want |= {(disks[i], layout.archive_name(rec["version_id"], i)) for i in range(rec["k"] + rec["m"])}
        return want
    finally:
        index.close()


def archives_on_disk(cluster) -> set[tuple[str, str]]:
    found = [archive_parts(ref) for ref in cluster.archive_files()]
    assert len(found) == len(set(found)), "an archive is stored twice on one disk"
    return set(found)


def tmp_files(cluster) -> list[str]:
    return [os.path.join(d, "tmp", f) for d in cluster.disk_paths.values() for f in os.listdir(os.path.join(d, "tmp"))]


def _desc(v) -> str:
    return v if v is GONE else f"{len(v)} bytes md5 {hashlib.md5(v).hexdigest()[:8]}"
