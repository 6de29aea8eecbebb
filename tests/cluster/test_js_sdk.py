"""The AWS SDK for JavaScript v3 (npm's @aws-sdk/client-s3) against Pocket.

The newest AWS SDKs send a CRC32 of every upload by default and check stored checksums
on reads; applications use their multipart `Upload` helper, paginators and presigned
URLs. tests/clients/js/check.mjs does all of that as an application would, and this test
checks its report and what it stored, read back with boto3 (a second client: bytes one
client wrote, the other reads). Node.js comes from Debian and the SDK from npm, at the
versions of tests/clients/js/package-lock.json (scripts/install-test-tools).
"""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import zlib

import pytest

from .conftest import payload
from .harness import ACCESS_KEY, REPO, SECRET_KEY

JS = os.path.join(REPO, "tests", "clients", "js")
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _sdk():
    assert shutil.which("node"), "node not installed: run scripts/install-test-tools (make test does)"
    assert os.path.isdir(os.path.join(JS, "node_modules", "@aws-sdk", "client-s3")), \
        "the JS SDK is not installed: run scripts/install-test-tools (make test does)"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _multipart_etag(data: bytes, part: int) -> str:
    md5s = b"".join(hashlib.md5(data[i:i + part]).digest() for i in range(0, len(data), part))
    return f'"{hashlib.md5(md5s).hexdigest()}-{-(-len(data) // part)}"'


def test_js_sdk_round_trip(cluster, bucket, tmp_path):
    small, large = payload(100_001), payload(12 * MIB + 12_345)   # 3 parts of 5 MiB, the last short
    (tmp_path / "small").write_bytes(small)
    (tmp_path / "large").write_bytes(large)
    env = {**os.environ, "ENDPOINT": cluster.endpoint, "BUCKET": bucket, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "SMALL": str(tmp_path / "small"), "LARGE": str(tmp_path / "large")}
    env.pop("AWS_CA_BUNDLE", None)   # plain HTTP here; the SDK would try to read it
    out = subprocess.run(["node", os.path.join(JS, "check.mjs")], cwd=JS, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout)

    small_etag = f'"{hashlib.md5(small).hexdigest()}"'
    crc32 = base64.b64encode(zlib.crc32(small).to_bytes(4, "big")).decode()
    assert got["small"] == {"etag": small_etag, "crc32": crc32}
    assert got["streamed"] == {"etag": small_etag, "crc32": crc32}
    assert got["large"]["etag"] == _multipart_etag(large, 5 * MIB)
    assert got["head"] == {"etag": small_etag, "type": "application/x-pocket-test", "length": len(small),
                           "meta": {"origin": "js-sdk"}}
    assert got["tags"] == {"team": "ops", "tier": "1"}
    assert got["small_get"] == _sha(small) and got["copy_get"] == _sha(small)
    assert got["large_get"] == _sha(large)
    assert got["large_range"] == {"sha256": _sha(large[5242000:5244000]),
                                  "content_range": f"bytes 5242000-5243999/{len(large)}"}
    assert got["not_modified"]["status"] == 304
    assert got["missing"] == {"name": "NoSuchKey", "status": 404}
    assert got["listing"]["keys"] == [["js/copy.bin", len(small)], ["js/large.bin", len(large)],
                                      ["js/small é+ %.bin", len(small)], ["js/streamed.bin", len(small)]]
    assert got["listing"]["pages"] == 4
    assert got["presigned_get"] == {"status": 200, "sha256": _sha(large)}
    assert got["presigned_put"] == {"status": 200}
    assert got["deleted"] == ["js/copy.bin", "js/never written"] and got["delete_errors"] == []

    s3 = cluster.client()
    assert s3.get_object(Bucket=bucket, Key="js/large.bin")["Body"].read() == large
    assert s3.get_object(Bucket=bucket, Key="js/small é+ %.bin")["Body"].read() == small
    assert s3.get_object(Bucket=bucket, Key="js/presigned.bin")["Body"].read() == small[:1000]
    assert s3.get_object(Bucket=bucket, Key="js/streamed.bin")["Body"].read() == small
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["js/large.bin", "js/presigned.bin", "js/small é+ %.bin", "js/streamed.bin"]
