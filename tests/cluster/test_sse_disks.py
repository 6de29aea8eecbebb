"""Encrypted objects on the disks: no plaintext there, scrub and repair without a key,
`pocket index rebuild` keeps them (and the bucket's default encryption) readable, and
segments moved on the disks are refused rather than served."""
from __future__ import annotations

import base64
import json
import os

import pytest
from botocore.exceptions import ClientError

from storage import layout

from .archives import archive_parts, flip_archive_bit, read_archive
from .harness import pocket
from .test_sse import KEY, SEG, _check_reads, _cluster, body, ssec


def _disk_files(c) -> list[str]:
    return [os.path.join(folder, f) for path in c.disk_paths.values()
            for folder, _dirs, files in os.walk(path) for f in files]


def test_disks_hold_no_plaintext_repair_and_rebuild(tmp_path):
    c = _cluster(str(tmp_path / "cluster")).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="sse-b")
        objects = {"c": (body((2 << 20) + 5, 41), ssec()), "s3": (body(3 * SEG + 1, 42), {}),
                   "small": (body(5000, 43), ssec())}
        s3.put_object(Bucket="sse-b", Key="s3", Body=objects["s3"][0], ServerSideEncryption="AES256")
        for key in ("c", "small"):
            s3.put_object(Bucket="sse-b", Key=key, Body=objects[key][0], **objects[key][1])
        control = body(3 * SEG, 44)
        s3.put_object(Bucket="sse-b", Key="control", Body=control)   # the grep finds plaintext when it is there

        def plaintext_on_disks(data: bytes) -> bool:
            run = data[len(data) // 2:len(data) // 2 + 64]
            found = False
            for path in _disk_files(c):
                with open(path, "rb") as f:
                    found |= run in f.read()
            return found
        assert plaintext_on_disks(control)   # the unencrypted control object
        s3.delete_object(Bucket="sse-b", Key="control")
        s3.put_bucket_encryption(Bucket="sse-b", ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        c.stop("gateway")
        pocket(c, "index", "rebuild", "--json")      # rebuilt from the disks alone: keys kept
        for key in ("c", "small", "s3"):
            assert not plaintext_on_disks(objects[key][0]), key

        # bit rot in a data fragment of the SSE-C object: found, repaired, read back
        vid = _version_of(c, "c")
        ref = next(r for r in sorted(c.archive_files()) if archive_parts(r)[1] == f"{vid}.0")
        original = read_archive(ref)
        flip_archive_bit(ref, layout.HEADER_SIZE + layout.RECORD_OVERHEAD + 100)
        _, found = pocket(c, "scrub", "--json", ok=(1,))   # every other encrypted archive checks out, keyless
        assert [(r["disk"], r["archive"]) for r in found["corrupt"]] == [archive_parts(ref)]
        assert found["missing"] == []
        _, fixed = pocket(c, "repair", "--json")
        assert fixed["fragments"] == 1 and fixed["remaining"] == 0
        assert read_archive(ref) == original
        c.start_gateway()
        s3 = c.client()
        _check_reads(s3, "sse-b", "c", objects["c"][0], **ssec())
        _check_reads(s3, "sse-b", "small", objects["small"][0], **ssec())
        _check_reads(s3, "sse-b", "s3", objects["s3"][0])
        rule = s3.get_bucket_encryption(Bucket="sse-b")["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"   # survived the rebuild
        assert s3.put_object(Bucket="sse-b", Key="new", Body=b"x")["ServerSideEncryption"] == "AES256"
        with pytest.raises(ClientError):
            s3.head_object(Bucket="sse-b", Key="control")
    finally:
        c.close()


def _version_of(c, key: str, mode: str = "SSE-C") -> str:
    """The version id of a key's archives, read from the archives' trailers."""
    for ref in sorted(c.archive_files()):
        raw = read_archive(ref)
        length, _ = layout.unpack_footer(raw[-layout.FOOTER_SIZE:])
        manifest = json.loads(raw[-layout.FOOTER_SIZE - length:-layout.FOOTER_SIZE])
        if manifest.get("key") == key:
            assert manifest["sse"]["mode"] == mode and ("salt" in manifest["sse"] or "wrapped" in manifest["sse"])
            assert base64.b64encode(KEY).decode() not in json.dumps(manifest)
            return manifest["version_id"]
    raise AssertionError(f"no archive of {key}")


def test_swapped_segments_are_refused_not_served(tmp_path):
    """Two segments swapped in every fragment (each record keeps a valid keyed checksum, which
    does not bind its position): the GCM tag does, so a read of them fails instead of serving
    bytes in the wrong place, and a ranged GET of other segments still works."""
    c = _cluster(str(tmp_path / "cluster")).start()
    try:
        s3 = c.client(retries=1)
        s3.create_bucket(Bucket="sse-swap")
        data = body(20 * SEG + 5, 81)    # archives big enough to be files of their own
        s3.put_object(Bucket="sse-swap", Key="k", Body=data, ServerSideEncryption="AES256")
        vid = _version_of(c, "k", "AES256")
        c.stop("gateway")
        refs = [r for r in c.archive_files() if archive_parts(r)[1].startswith(vid + ".")]
        assert len(refs) == 6 and all("#" not in r for r in refs)
        for ref in refs:
            raw = bytearray(read_archive(ref))
            header = layout.ArchiveHeader.unpack(bytes(raw[:layout.HEADER_SIZE]))
            geo = layout.Geometry(len(data) + 21 * layout.SEAL_BYTES, header.segment_size, header.k)
            a, b = geo.record_offset(0), geo.record_offset(1)
            n = geo.record_length(0)
            raw[a:a + n], raw[b:b + n] = raw[b:b + n], raw[a:a + n]
            with open(ref, "wb") as f:
                f.write(raw)
        c.start_gateway()
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket="sse-swap", Key="k", Range="bytes=10-20")["Body"].read()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        first, last = 5 * SEG - 3, 7 * SEG + 2
        got = s3.get_object(Bucket="sse-swap", Key="k", Range=f"bytes={first}-{last}")["Body"].read()
        assert got == data[first:last + 1]
    finally:
        c.close()
