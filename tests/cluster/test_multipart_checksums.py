"""Multipart checksums as boto3 and the AWS CLI use them: per part, COMPOSITE and FULL_OBJECT."""
import base64
import hashlib
import os
import shutil
import subprocess
import zlib

import pytest
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from .conftest import payload
from .harness import ACCESS_KEY, SECRET_KEY, pocket
from .test_s3_surface import AWS

MiB = 1 << 20


def _code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def crc32c(data: bytes) -> bytes:
    return crt.crc32c(data).to_bytes(4, "big")


def composite(fn, chunks) -> str:
    return b64(fn(b"".join(fn(c) for c in chunks))) + f"-{len(chunks)}"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_boto3_upload_file_defaults_to_crc32_and_the_checksum_reads_back(cluster, bucket, tmp_path):
    s3 = cluster.client()
    data = payload(12 * MiB + 5, 1)
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(str(src), bucket, "default", Config=config)   # boto3's defaults: CRC32 on every part
    chunks = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    head = s3.head_object(Bucket=bucket, Key="default", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == composite(crc32, chunks) and head["ChecksumType"] == "COMPOSITE"
    part = s3.get_object(Bucket=bucket, Key="default", PartNumber=2, ChecksumMode="ENABLED")
    assert part["ChecksumCRC32"] == b64(crc32(chunks[1])) and part["Body"].read() == chunks[1]
    assert s3.get_object(Bucket=bucket, Key="default")["Body"].read() == data

    # a full-object CRC32 the client computed: boto3 asks for FULL_OBJECT, and the combined
    # part CRCs must equal the CRC of the whole file (botocore checks it again on the GET)
    s3.upload_file(str(src), bucket, "full", Config=config, ExtraArgs={"ChecksumCRC32": b64(crc32(data))})
    head = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == b64(crc32(data)) and head["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == b64(crc32(data)) and got["Body"].read() == data

    # CopyObject: a full-object checksum is checked on the way and kept; a composite one
    # cannot describe the one-piece copy, which gets the whole object's CRC32 instead
    for source in ("default", "full"):
        copied = s3.copy_object(Bucket=bucket, Key=f"copy-{source}", CopySource={"Bucket": bucket, "Key": source})
        assert copied["CopyObjectResult"]["ChecksumCRC32"] == b64(crc32(data))
        head = s3.head_object(Bucket=bucket, Key=f"copy-{source}", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == b64(crc32(data)) and head["ChecksumType"] == "FULL_OBJECT"


@pytest.mark.parametrize("algorithm, fn, kind", [("SHA256", sha256, "COMPOSITE"), ("CRC32C", crc32c, "COMPOSITE"),
                                                 ("CRC32C", crc32c, "FULL_OBJECT")])
def test_explicit_algorithm_parts_list_complete_and_attributes(cluster, bucket, algorithm, fn, kind):
    s3 = cluster.client()
    chunks = [payload(5 * MiB, 2), payload(MiB, 3)]
    created = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm=algorithm, ChecksumType=kind)
    assert created["ChecksumAlgorithm"] == algorithm and created["ChecksumType"] == kind
    uid, member = created["UploadId"], f"Checksum{algorithm}"
    parts = []
    for n, chunk in enumerate(chunks, 1):
        r = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=n, Body=chunk, ChecksumAlgorithm=algorithm)
        assert r[member] == b64(fn(chunk))
        parts.append({"PartNumber": n, "ETag": r["ETag"], member: r[member]})
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert listed["ChecksumAlgorithm"] == algorithm and listed["ChecksumType"] == kind
    assert [p[member] for p in listed["Parts"]] == [b64(fn(c)) for c in chunks]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts})
    whole = composite(fn, chunks) if kind == "COMPOSITE" else b64(fn(b"".join(chunks)))
    assert done[member] == whole and done["ChecksumType"] == kind
    attrs = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Checksum", "ObjectParts"])
    assert attrs["Checksum"] == {member: whole, "ChecksumType": kind}
    assert [p[member] for p in attrs["ObjectParts"]["Parts"]] == [b64(fn(c)) for c in chunks]
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got[member] == whole and got["Body"].read() == b"".join(chunks)


def test_checksum_errors_change_nothing(cluster, bucket):
    s3 = cluster.client()
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="bad", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT")
    assert _code(e) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="bad", ChecksumAlgorithm="CRC64NVME", ChecksumType="COMPOSITE")
    assert _code(e) == ("InvalidRequest", 400)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)

    chunks = [payload(5 * MiB, 4), b"end" * 100]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")["UploadId"]
    before = cluster.archive_files()
    with pytest.raises(ClientError) as e:   # a wrong part checksum: refused, nothing stored
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=chunks[0],
                       ChecksumCRC32=b64(crc32(b"something else")))
    assert _code(e) == ("BadDigest", 400)
    with pytest.raises(ClientError) as e:   # another algorithm than the upload declared
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=chunks[0], ChecksumAlgorithm="SHA256")
    assert _code(e) == ("InvalidRequest", 400)
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert cluster.archive_files() == before

    parts = []
    for n, chunk in enumerate(chunks, 1):
        r = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=n, Body=chunk, ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    wrong = [parts[0], {**parts[1], "ChecksumCRC32": b64(crc32(b"nope"))}]
    missing = [parts[0], {k: v for k, v in parts[1].items() if k != "ChecksumCRC32"}]
    for bad, code in ((wrong, "InvalidPart"), (missing, "InvalidRequest")):
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": bad})
        assert _code(e) == (code, 400)
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key="k")
        assert len(s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]) == 2
    done = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts})
    assert done["ChecksumCRC32"] == composite(crc32, chunks)

    full = s3.create_multipart_upload(Bucket=bucket, Key="f", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    big = payload(5 * MiB, 8)
    r = s3.upload_part(Bucket=bucket, Key="f", UploadId=full["UploadId"], PartNumber=1, Body=big,
                       ChecksumAlgorithm="CRC32")
    one = [{"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]}]
    with pytest.raises(ClientError) as e:   # the whole object's CRC sent on Complete must be right (1 part)
        s3.complete_multipart_upload(Bucket=bucket, Key="f", UploadId=full["UploadId"], MultipartUpload={"Parts": one},
                                     ChecksumCRC32=b64(crc32(big + b"!")), ChecksumType="FULL_OBJECT")
    assert _code(e) == ("BadDigest", 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="f")
    # a FULL_OBJECT upload takes a part sent without any checksum (AWS does): its CRC is computed
    bare = cluster.client(request_checksum_calculation="when_required")
    r2 = bare.upload_part(Bucket=bucket, Key="f", UploadId=full["UploadId"], PartNumber=2, Body=b"def")
    assert r2["ChecksumCRC32"] == b64(crc32(b"def"))
    with pytest.raises(ClientError) as e:   # but a COMPOSITE one does not
        bare.upload_part(Bucket=bucket, Key="k2", PartNumber=1, Body=b"x", UploadId=s3.create_multipart_upload(
            Bucket=bucket, Key="k2", ChecksumAlgorithm="CRC32")["UploadId"])
    assert _code(e) == ("InvalidRequest", 400)
    one.append({"PartNumber": 2, "ETag": r2["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="f", UploadId=full["UploadId"],
                                        MultipartUpload={"Parts": one}, ChecksumCRC32=b64(crc32(big + b"def")),
                                        ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC32"] == b64(crc32(big + b"def")) and done["ChecksumType"] == "FULL_OBJECT"


def test_upload_part_copy_computes_the_declared_checksum(cluster, bucket):
    s3 = cluster.client()
    source = payload(6 * MiB, 5)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst", ChecksumAlgorithm="SHA256")["UploadId"]
    r = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"})["CopyPartResult"]
    assert r["ChecksumSHA256"] == b64(sha256(source))
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]}]})
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == composite(sha256, [source])


def test_aws_cli_cp_stores_a_crc32_checksum(cluster, bucket, tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none")}
    data = payload(20 * MiB + 1, 6)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    out = subprocess.run([AWS, "--endpoint-url", cluster.endpoint, "s3", "cp", str(src), f"s3://{bucket}/cli.bin"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    chunks = [data[i:i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]   # the CLI's default part size
    head = cluster.client().head_object(Bucket=bucket, Key="cli.bin", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == composite(crc32, chunks) and head["ChecksumType"] == "COMPOSITE"


def test_checksums_survive_index_rebuild(fresh_cluster):
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="ckb")
    chunks = [payload(5 * MiB, 7), b"last part"]
    uid = s3.create_multipart_upload(Bucket="ckb", Key="done", ChecksumAlgorithm="SHA256")["UploadId"]
    parts = []
    for n, chunk in enumerate(chunks, 1):
        r = s3.upload_part(Bucket="ckb", Key="done", UploadId=uid, PartNumber=n, Body=chunk, ChecksumAlgorithm="SHA256")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    s3.complete_multipart_upload(Bucket="ckb", Key="done", UploadId=uid, MultipartUpload={"Parts": parts})
    open_id = s3.create_multipart_upload(Bucket="ckb", Key="open", ChecksumAlgorithm="CRC32",
                                         ChecksumType="FULL_OBJECT")["UploadId"]
    r = s3.upload_part(Bucket="ckb", Key="open", UploadId=open_id, PartNumber=1, Body=chunks[0],
                       ChecksumAlgorithm="CRC32")
    first = {"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]}

    c.stop("gateway")
    shutil.rmtree(f"{c.root}/index")
    pocket(c, "index", "rebuild")   # exits 0, else fails with its output
    c.start_gateway()
    s3 = c.client()
    head = s3.head_object(Bucket="ckb", Key="done", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == composite(sha256, chunks) and head["ChecksumType"] == "COMPOSITE"
    attrs = s3.get_object_attributes(Bucket="ckb", Key="done", ObjectAttributes=["ObjectParts"])
    assert [p["ChecksumSHA256"] for p in attrs["ObjectParts"]["Parts"]] == [b64(sha256(ch)) for ch in chunks]
    listed = s3.list_parts(Bucket="ckb", Key="open", UploadId=open_id)
    assert (listed["ChecksumAlgorithm"], listed["ChecksumType"]) == ("CRC32", "FULL_OBJECT")
    r = s3.upload_part(Bucket="ckb", Key="open", UploadId=open_id, PartNumber=2, Body=b"tail", ChecksumAlgorithm="CRC32")
    done = s3.complete_multipart_upload(Bucket="ckb", Key="open", UploadId=open_id, MultipartUpload={"Parts": [
        first, {"PartNumber": 2, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]}]})
    assert done["ChecksumCRC32"] == b64(crc32(chunks[0] + b"tail")) and done["ChecksumType"] == "FULL_OBJECT"
