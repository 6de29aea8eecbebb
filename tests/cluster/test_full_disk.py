"""Disks that really fill up: a capacity quota on two disks (runs everywhere), and the
same scenario on two tiny tmpfs filesystems (needs permission to mount; skipped
without it).

With one disk full, PUTs go on degraded on the others; with two of an ec:4+2 volume
full, a PUT cannot reach its write quorum of 5 and gets 507 InsufficientStorage,
leaving no visible object and no garbage; what was stored reads back; once objects are
deleted (and packs compacted) there is room again. The gateway's index filling its
filesystem gets the same 507 (tmpfs too).
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from storage.node.quota import RECORD_RESERVE

from .conftest import payload
from .harness import QUIET, ProcCluster, pocket
from .workload import tmp_files

SMALL = 240_000                     # ec:4+2, ~60 KB per archive: its own file (above pack_threshold)
TINY = 3000                         # replica:3 in packs
FULL_DISKS = ("n1d1", "n2d1")
STORAGE = {"segment_size": 64 << 10, "pack_threshold": 32 << 10, "min_free_bytes": 200_000,
           "compact_interval": 1.0, "pack_size": 1 << 20}
# No free-space reserve in the gateway: the disks find out they are full by ENOSPC alone.
NO_RESERVE = {**STORAGE, "min_free_bytes": 0}


def _disk_bytes(path: str) -> int:
    total = 0
    for sub in ("archives", "records", "packs", "tmp"):
        for folder, _dirs, files in os.walk(os.path.join(path, sub)):
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


def _mount_tmpfs(path: str, size: int) -> str:
    """A tiny filesystem at `path`; skips the test where mounting is not allowed (CI)."""
    os.makedirs(path, exist_ok=True)
    try:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                             capture_output=True, text=True)
    except OSError as e:
        pytest.skip(f"cannot mount tmpfs here: {e}")
    if out.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {out.stderr.strip()}")
    return path


def _fill_until_refused(c: ProcCluster, s3, stored: dict) -> tuple[ClientError, set[str]]:
    """PUTs until one is refused; its error and the archives there were before it."""
    for i in range(200):
        key = f"fill{i:03d}"
        data = payload(SMALL if i % 3 else TINY)
        before = c.archive_files()
        try:
            s3.put_object(Bucket="full", Key=key, Body=data)
        except ClientError as e:
            if e.response["Error"]["Code"] != "InsufficientStorage":
                raise
            with pytest.raises(ClientError) as gone:
                s3.head_object(Bucket="full", Key=key)
            assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
            assert c.archive_files() == before, "a refused PUT left archives behind"   # removed before the reply
            return e, before
        stored[key] = data
    raise AssertionError("the disks never filled up")


def _scenario(c: ProcCluster, limit: int) -> None:
    s3 = c.client(retries=1)
    s3.create_bucket(Bucket="full")
    stored: dict[str, bytes] = {}
    refused, archives = _fill_until_refused(c, s3, stored)
    assert refused.response["ResponseMetadata"]["HTTPStatusCode"] == 507
    print(f"{len(stored)} objects stored before the disks filled")
    assert len(stored) >= 5, "the PUTs before the disks filled should have succeeded"
    assert "InsufficientStorage" in refused.response["Error"]["Code"]
    for disk in FULL_DISKS:
        assert _disk_bytes(c.disk_paths[disk]) <= limit, f"{disk} went past its {limit} bytes"
    assert not tmp_files(c)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="full").get("Contents", [])]
    assert listed == sorted(stored)
    for key, data in stored.items():
        assert s3.get_object(Bucket="full", Key=key)["Body"].read() == data, key
    _, st = pocket(c, "status", "--json")
    full = {d["id"]: d for d in st["disks"] if d["id"] in FULL_DISKS}
    assert all(d["free"] < RECORD_RESERVE + SMALL for d in full.values()), full
    assert c.archive_files() == archives, "a refused PUT's archives turned up after its 507"

    # Small objects still go to volumes of three disks with room.
    s3.put_object(Bucket="full", Key="tiny-after", Body=b"t" * 100)
    stored["tiny-after"] = b"t" * 100

    # Free space: delete everything, let removal and compaction run, then write again.
    for key in stored:
        s3.delete_object(Bucket="full", Key=key)
    deadline = time.monotonic() + 30
    after = payload(SMALL)
    while True:
        try:
            s3.put_object(Bucket="full", Key="after", Body=after)
            break
        except ClientError as e:
            assert e.response["Error"]["Code"] == "InsufficientStorage", e.response
            assert time.monotonic() < deadline, "deleting everything never made room"
            time.sleep(0.5)
    assert s3.get_object(Bucket="full", Key="after")["Body"].read() == after
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="full")["Contents"]] == ["after"]


def test_disks_at_their_capacity_quota(tmp_path):
    limit = 1 << 20
    c = ProcCluster(str(tmp_path / "cluster"), storage=STORAGE, sections=QUIET,
                    capacity={d: limit for d in FULL_DISKS}).start()
    try:
        _scenario(c, limit)
    finally:
        c.close()


def test_disks_on_tiny_filesystems(tmp_path):
    """The same on real 2 MiB tmpfs mounts and without a reserve in the gateway: the disks
    themselves refuse archives before the filesystem is full (the kernel's ENOSPC or the
    store's record reserve), and deletes still work on them."""
    limit = 2 << 20
    c = ProcCluster(str(tmp_path / "cluster"), storage=NO_RESERVE, sections=QUIET)
    mounted = []
    try:
        for disk in FULL_DISKS:
            mounted.append(_mount_tmpfs(c.disk_paths[disk], limit))
        c.start()
        _scenario(c, limit)
    finally:
        c.close()
        for path in mounted:
            subprocess.run(["umount", path], check=False)


def _index_fills(c: ProcCluster, fill, make_room) -> None:
    """PUTs until the index has no room: then 507 and nothing left behind, what was stored
    still reads, and after `make_room(c)` writes work again."""
    s3 = c.client(retries=1)
    s3.create_bucket(Bucket="idx-full")
    kept = {f"k{i}": payload(SMALL if i % 2 else TINY) for i in range(6)}
    for key, data in kept.items():
        s3.put_object(Bucket="idx-full", Key=key, Body=data)
    before = c.archive_files()
    fill()
    meta = {"pad": "m" * 1800}     # big records fill the index in fewer requests
    for i in range(2000):       # LMDB reuses free pages first; the file grows in a while
        key, data = f"more{i:04d}", payload(TINY)
        try:
            s3.put_object(Bucket="idx-full", Key=key, Body=data, Metadata=meta)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "InsufficientStorage", e.response
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 507
            break
        kept[key] = data
        before = c.archive_files()
    else:
        raise AssertionError("the index never ran out of room")
    print(f"the index took {len(kept)} objects")
    with pytest.raises(ClientError):
        s3.head_object(Bucket="idx-full", Key=key)
    assert c.archive_files() == before, "a refused PUT left archives behind"
    for key, data in kept.items():
        assert s3.get_object(Bucket="idx-full", Key=key)["Body"].read() == data, key
    assert c.archive_files() == before, "a refused PUT's archives turned up after its 507"
    make_room(c)
    s3 = c.client(retries=1)
    s3.put_object(Bucket="idx-full", Key="new-big", Body=b"room again")
    assert s3.get_object(Bucket="idx-full", Key="new-big")["Body"].read() == b"room again"
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="idx-full")["Contents"]) == sorted([*kept, "new-big"])


def _index_cluster(tmp_path, **gateway) -> ProcCluster:
    """A cluster whose gateway keeps its index in <root>/idx, with more [gateway] settings."""
    c = ProcCluster(str(tmp_path / "cluster"), storage=STORAGE, sections=QUIET)
    extra = "".join(f"{k} = {v!r}\n" for k, v in {"index": "idx", **gateway}.items()).replace("'", '"')
    with open(c.config) as f:
        text = f.read().replace("[gateway]\n", "[gateway]\n" + extra, 1)
    with open(c.config, "w") as f:
        f.write(text)
    return c


def test_index_at_its_size_limit(tmp_path):
    """gateway.index_max_size reached (runs everywhere, no mount needed): 507, nothing
    behind; the operator raises the limit and restarts the gateway, and writes work."""
    c = _index_cluster(tmp_path, index_max_size=512 << 10)

    def raise_limit(c):
        c.stop("gateway")
        with open(c.config) as f:
            text = f.read().replace(f"index_max_size = {512 << 10}", f"index_max_size = {8 << 20}")
        with open(c.config, "w") as f:
            f.write(text)
        c.start_gateway()
    try:
        c.start()
        _index_fills(c, lambda: None, raise_limit)
    finally:
        c.close()


def test_index_filesystem_full(tmp_path):
    """The gateway's LMDB index on a filesystem that fills up (a 4 MiB tmpfs; skipped where
    mounting is not allowed): the same 507, and writes work again once there is room."""
    c = _index_cluster(tmp_path)
    index = os.path.join(c.root, "idx")
    _mount_tmpfs(index, 4 << 20)
    filler = os.path.join(index, "filler")

    def fill():
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
    try:
        c.start()
        _index_fills(c, fill, lambda c: os.unlink(filler))
    finally:
        c.close()
        subprocess.run(["umount", index], check=False)
