"""Multipart upload as boto3 and the AWS CLI drive it, against real node and gateway processes."""
import hashlib
import os
import shutil
import subprocess
import time

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from .conftest import payload
from .harness import ACCESS_KEY, SECRET_KEY, pocket
from .test_s3_surface import AWS

MiB = 1 << 20


def _code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _mp_etag(chunks) -> str:
    return '"' + hashlib.md5(b"".join(hashlib.md5(c).digest() for c in chunks)).hexdigest() + f'-{len(chunks)}"'


def _upload(s3, bucket, key, chunks, numbers=None):
    """Create an upload and upload `chunks` as parts; returns (upload id, [{PartNumber, ETag}])."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for n, chunk in zip(numbers or range(1, len(chunks) + 1), chunks):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=chunk)["ETag"]
        done.append({"PartNumber": n, "ETag": etag})
    return uid, done


def _complete(s3, bucket, key, uid, parts):
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})


def _wait_gone(cluster, files, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline and cluster.archive_files() & files:
        time.sleep(0.1)
    assert not cluster.archive_files() & files, "archives that should be reclaimed are still on the disks"


def test_three_parts_roundtrip_part_and_range_gets(cluster, bucket):
    s3 = cluster.client()
    chunks = [payload(5 * MiB, 1), payload(5 * MiB, 2), payload(MiB + 3, 3)]
    data = b"".join(chunks)
    before = cluster.archive_files()
    uid = s3.create_multipart_upload(Bucket=bucket, Key="big", ContentType="video/x",
                                     Metadata={"origin": "test"})["UploadId"]
    parts = []
    for n, chunk in enumerate(chunks, 1):
        etag = s3.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=n, Body=chunk)["ETag"]
        assert etag == f'"{hashlib.md5(chunk).hexdigest()}"'
        parts.append({"PartNumber": n, "ETag": etag})
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="big")  # nothing visible before Complete
    done = _complete(s3, bucket, "big", uid, parts)
    assert done["ETag"] == _mp_etag(chunks) and done["Key"] == "big" and done["Bucket"] == bucket
    written = cluster.archive_files() - before

    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["Body"].read() == data
    assert got["ETag"] == _mp_etag(chunks) and got["ContentType"] == "video/x"
    assert got["Metadata"] == {"origin": "test"} and got["ContentLength"] == len(data)
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [("big", len(data), _mp_etag(chunks))]

    part2 = s3.get_object(Bucket=bucket, Key="big", PartNumber=2)
    assert part2["ResponseMetadata"]["HTTPStatusCode"] == 206 and part2["PartsCount"] == 3
    assert part2["ContentRange"] == f"bytes {5 * MiB}-{10 * MiB - 1}/{len(data)}"
    assert part2["Body"].read() == chunks[1]
    head3 = s3.head_object(Bucket=bucket, Key="big", PartNumber=3)
    assert head3["ContentLength"] == MiB + 3 and head3["PartsCount"] == 3
    for lo, hi in [(5 * MiB - 10, 5 * MiB + 9), (MiB, 10 * MiB + 5), (10 * MiB - 1, len(data) - 1)]:
        ranged = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={lo}-{hi}")
        assert ranged["Body"].read() == data[lo:hi + 1], (lo, hi)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="big", PartNumber=4)
    assert _code(e) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="big", PartNumber=4)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="big", PartNumber=1, Range="bytes=0-1")
    assert _code(e) == ("InvalidRequest", 400)
    s3.put_object(Bucket=bucket, Key="plain", Body=b"0123456789")
    whole = s3.get_object(Bucket=bucket, Key="plain", PartNumber=1)
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 206 and whole["Body"].read() == b"0123456789"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain", PartNumber=2)
    assert _code(e) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="plain", PartNumber=2)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    s3.put_object(Bucket=bucket, Key="big", Body=b"small now")  # overwriting removes every part's archives
    _wait_gone(cluster, written)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == b"small now"


def test_upload_file_with_concurrency(cluster, bucket, tmp_path):
    s3 = cluster.client()
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    data = payload(40 * MiB + 7, 4)
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    s3.upload_file(str(src), bucket, "dir/file.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="dir/file.bin")
    chunks = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    assert head["ETag"] == _mp_etag(chunks) and head["ContentLength"] == len(data)
    s3.download_file(bucket, "dir/file.bin", str(back), Config=config)
    assert back.read_bytes() == data


def test_complete_errors_change_nothing(cluster, bucket):
    s3 = cluster.client()
    chunks = [payload(5 * MiB, 5), b"second" * 10, b"third" * 10]
    uid, parts = _upload(s3, bucket, "k", chunks[:1])
    with_1 = cluster.archive_files()
    for n in (2, 3):
        etag = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=n, Body=chunks[n - 1])["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
        if n == 2:
            with_2 = cluster.archive_files()
    files = cluster.archive_files()
    part2, part3 = with_2 - with_1, files - with_2

    def refused(bad_parts, code, status=400):
        with pytest.raises(ClientError) as e:
            _complete(s3, bucket, "k", uid, bad_parts)
        assert _code(e) == (code, status)
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key="k")
        assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]] == [1, 2, 3]

    refused([parts[1], parts[0]], "InvalidPartOrder")
    refused([parts[0], parts[0]], "InvalidPartOrder")
    refused([parts[0], {"PartNumber": 2, "ETag": parts[2]["ETag"]}], "InvalidPart")
    refused([parts[0], {"PartNumber": 4, "ETag": parts[2]["ETag"]}], "InvalidPart")
    refused(parts, "EntityTooSmall")  # part 2 is small and not last
    raw = cluster.client()
    raw.meta.events.register("before-sign.s3.CompleteMultipartUpload",
                             lambda request, **kw: setattr(request, "data", b"<CompleteMultipartUpload><Part>"))
    with pytest.raises(ClientError) as e:
        _complete(raw, bucket, "k", uid, parts)
    assert _code(e) == ("MalformedXML", 400)
    assert cluster.archive_files() == files

    for call in (lambda u: s3.upload_part(Bucket=bucket, Key="k", UploadId=u, PartNumber=1, Body=b"x"),
                 lambda u: _complete(s3, bucket, "k", u, parts),
                 lambda u: s3.list_parts(Bucket=bucket, Key="k", UploadId=u),
                 lambda u: s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=u)):
        for bogus in ("0" * 32, "not-an-id"):
            with pytest.raises(ClientError) as e:
                call(bogus)
            assert _code(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:  # an upload id is bound to its key
        s3.list_parts(Bucket=bucket, Key="other", UploadId=uid)
    assert _code(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=10001, Body=b"x")
    assert _code(e) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="k" * 1025, UploadId=uid)
    assert _code(e) == ("KeyTooLongError", 400)

    done = _complete(s3, bucket, "k", uid, [parts[0], parts[2]])  # part 2 left out: reclaimed
    assert done["ETag"] == _mp_etag([chunks[0], chunks[2]])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == chunks[0] + chunks[2]
    assert _complete(s3, bucket, "k", uid, [parts[0], parts[2]])["ETag"] == done["ETag"]  # a retried Complete
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert _code(e) == ("NoSuchUpload", 404)
    _wait_gone(cluster, part2)
    assert len(part2) == 3 and part3 <= cluster.archive_files()


def test_abort_reclaims_archives(cluster, bucket):
    s3 = cluster.client()
    before = cluster.archive_files()
    uid, _ = _upload(s3, bucket, "aborted", [payload(3 * MiB, 6), b"tail" * 100])
    s3.upload_part(Bucket=bucket, Key="aborted", UploadId=uid, PartNumber=2, Body=b"again" * 100)
    created = cluster.archive_files() - before
    assert len(created) >= 6 + 3  # an EC part and a replicated one (plus the replaced one, until reclaimed)
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=uid)
    assert not cluster.archive_files() & created  # Abort returns after removing the archives
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=uid)
    assert _code(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="aborted")


def test_list_uploads_and_parts_paginate(cluster, bucket):
    s3 = cluster.client()
    keys = ["a/1", "a/2", "b", "b", "c/d/e"]
    ids = [s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"] for k in keys]
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
    seen = [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])]
    assert seen == list(zip(keys, ids))  # by key, then by initiation
    top = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "c/"]
    assert [u["Key"] for u in top["Uploads"]] == ["b", "b"]
    first = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="b", UploadIdMarker=ids[2])
    assert [u["UploadId"] for u in first["Uploads"]] == ids[3:]
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")["Uploads"]] == ["a/1", "a/2"]

    for n in range(1, 6):
        s3.upload_part(Bucket=bucket, Key="b", UploadId=ids[2], PartNumber=n * 2, Body=f"part {n}".encode())
    pages = s3.get_paginator("list_parts").paginate(Bucket=bucket, Key="b", UploadId=ids[2],
                                                   PaginationConfig={"PageSize": 2})
    listed = [(p["PartNumber"], p["Size"], p["ETag"]) for page in pages for p in page.get("Parts", [])]
    assert listed == [(n * 2, 6, f'"{hashlib.md5(f"part {n}".encode()).hexdigest()}"') for n in range(1, 6)]
    one = s3.list_parts(Bucket=bucket, Key="b", UploadId=ids[2], MaxParts=2, PartNumberMarker=4)
    assert [p["PartNumber"] for p in one["Parts"]] == [6, 8] and one["IsTruncated"]
    assert one["NextPartNumberMarker"] == 8

    before = cluster.archive_files()
    s3.delete_bucket(Bucket=bucket)  # a deleted bucket takes its unfinished uploads with it
    assert len(before - cluster.archive_files()) >= 5 * 3
    s3.create_bucket(Bucket=bucket)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_upload_part_copy_with_range(cluster, bucket):
    s3 = cluster.client()
    source = payload(7 * MiB, 7)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    chunks = [payload(5 * MiB, 8), payload(2 * MiB, 9)]
    uid, parts = _upload(s3, bucket, "mp-src", chunks)
    _complete(s3, bucket, "mp-src", uid, parts)  # a multipart source, read across its part boundary

    uid = s3.create_multipart_upload(Bucket=bucket, Key="copy")["UploadId"]
    r1 = s3.upload_part_copy(Bucket=bucket, Key="copy", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes=1000-{5 * MiB + 999}")
    r2 = s3.upload_part_copy(Bucket=bucket, Key="copy", UploadId=uid, PartNumber=2,
                             CopySource=f"{bucket}/mp-src", CopySourceRange=f"bytes={MiB}-{6 * MiB - 1}")
    r3 = s3.upload_part_copy(Bucket=bucket, Key="copy", UploadId=uid, PartNumber=3, CopySource=f"/{bucket}/src")
    expected = [source[1000:5 * MiB + 1000], (chunks[0] + chunks[1])[MiB:6 * MiB], source]
    for r, chunk in zip((r1, r2, r3), expected):
        assert r["CopyPartResult"]["ETag"] == f'"{hashlib.md5(chunk).hexdigest()}"'
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="copy", UploadId=uid, PartNumber=4,
                            CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes=0-{7 * MiB}")
    assert _code(e) == ("InvalidRange", 416)   # past the source's end
    for improper in ("bytes=5-2", "bytes=hello-world", "0-2", "bytes=0-2,3-5"):
        with pytest.raises(ClientError) as e:
            s3.upload_part_copy(Bucket=bucket, Key="copy", UploadId=uid, PartNumber=4,
                                CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=improper)
        assert _code(e) == ("InvalidArgument", 400), improper
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="copy", UploadId=uid, PartNumber=4,
                            CopySource={"Bucket": bucket, "Key": "missing"})
    assert _code(e) == ("NoSuchKey", 404)
    _complete(s3, bucket, "copy", uid, [{"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]}
                                        for n, r in enumerate((r1, r2, r3), 1)])
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"".join(expected)


def test_index_rebuild_finds_multipart_objects_and_open_uploads(fresh_cluster):
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="mpb")
    chunks = [payload(5 * MiB, 10), payload(2 * MiB, 11)]
    uid, parts = _upload(s3, "mpb", "done", chunks)
    _complete(s3, "mpb", "done", uid, parts)
    first = payload(5 * MiB, 12)
    open_id, open_parts = _upload(s3, "mpb", "open", [first])
    gone, _ = _upload(s3, "mpb", "gone", [b"x" * 1000])
    s3.abort_multipart_upload(Bucket="mpb", Key="gone", UploadId=gone)
    uid, parts = _upload(s3, "mpb", "deleted", [b"y" * 1000])
    _complete(s3, "mpb", "deleted", uid, parts)
    s3.delete_object(Bucket="mpb", Key="deleted")

    c.stop("gateway")
    shutil.rmtree(f"{c.root}/index")
    _, out = pocket(c, "index", "rebuild")   # exits 0, else fails with its output
    assert "1 objects, 1 unfinished multipart uploads (1 parts)" in out
    c.start_gateway()
    s3 = c.client()
    got = s3.get_object(Bucket="mpb", Key="done")
    assert got["Body"].read() == b"".join(chunks) and got["ETag"] == _mp_etag(chunks)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="mpb")["Contents"]] == ["done"]
    assert [(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket="mpb")["Uploads"]] == \
        [("open", open_id)]
    tail = s3.upload_part(Bucket="mpb", Key="open", UploadId=open_id, PartNumber=2, Body=b"tail")
    _complete(s3, "mpb", "open", open_id, open_parts + [{"PartNumber": 2, "ETag": tail["ETag"]}])
    assert s3.get_object(Bucket="mpb", Key="open")["Body"].read() == first + b"tail"


def test_aws_cli_cp_uses_multipart(cluster, bucket, tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none")}
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    data = payload(30 * MiB, 13)
    src.write_bytes(data)

    def aws(*args):
        out = subprocess.run([AWS, "--endpoint-url", cluster.endpoint, *args], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout
    aws("s3", "cp", str(src), f"s3://{bucket}/cli.bin")
    aws("s3", "cp", f"s3://{bucket}/cli.bin", str(back))
    assert back.read_bytes() == data
    chunks = [data[i:i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]  # the CLI's default part size
    assert cluster.client().head_object(Bucket=bucket, Key="cli.bin")["ETag"] == _mp_etag(chunks)


def test_create_upload_tagging_lands_on_completed_object(cluster, bucket):
    """CreateMultipartUpload's x-amz-tagging is checked like PutObject's (bad tags: InvalidTag,
    no upload left behind) and the tags are the completed object's, as on S3."""
    s3 = cluster.client()
    for bad in ["&".join(f"k{i}=v" for i in range(11)), "k=1&k=2", "aws%3Ax=1", "k=" + "v" * 257]:
        with pytest.raises(ClientError) as e:
            s3.create_multipart_upload(Bucket=bucket, Key="tagged", Tagging=bad)
        assert _code(e) == ("InvalidTag", 400), bad
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    uid = s3.create_multipart_upload(Bucket=bucket, Key="tagged", Tagging="team=ops&tier=cold%20data")["UploadId"]
    chunks = [payload(5 * MiB, 41), payload(MiB + 7, 42)]
    parts = []
    for n, chunk in enumerate(chunks, 1):
        parts.append({"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="tagged", UploadId=uid,
                                                              PartNumber=n, Body=chunk)["ETag"]})
    _complete(s3, bucket, "tagged", uid, parts)
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == [
        {"Key": "team", "Value": "ops"}, {"Key": "tier", "Value": "cold data"}]
    got = s3.get_object(Bucket=bucket, Key="tagged")
    assert got["TagCount"] == 2
    assert got["Body"].read() == b"".join(chunks)
