"""What migration tests put in a source and how they compare it with Pocket afterwards.

The seed has what breaks migrators: 0-byte objects, multipart objects with unusual part
sizes, keys with unicode, spaces, `%` and `+`, user metadata, tags, the standard headers,
and a versioned bucket with overwrites and delete markers. `snapshot` reads a bucket
through plain S3 calls, so source and Pocket are compared as a client sees them.
"""
from __future__ import annotations

import datetime
import hashlib
import random
import xml.etree.ElementTree as ET
from urllib.parse import unquote

KEYS = ["empty", "small.txt", "dir/ünïcødé ✓.bin", "dir/with space.dat", "pct%20not+plus.dat", "a/b/c/deep.json"]
MULTIPART = {"big/odd-parts.bin": [(5 << 20) + 1, (5 << 20) + 7, 3]}


def seed_plain(s3, bucket: str, seed: int = 1) -> None:
    rnd = random.Random(seed)
    s3.create_bucket(Bucket=bucket)
    for i, key in enumerate(KEYS):
        size = [0, 11, 70_000, 300_000, 1_000, 2_500_000][i]
        extra = {}
        if i % 2:
            extra = {"Metadata": {"owner": f"team-{i}", "note": "hello world"}, "Tagging": f"env=prod&n={i}",
                     "CacheControl": "max-age=60", "ContentDisposition": f'attachment; filename="f{i}"',
                     "ContentLanguage": "de", "ContentEncoding": "identity",
                     "Expires": datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)}
        s3.put_object(Bucket=bucket, Key=key, Body=rnd.randbytes(size), ContentType=f"application/x-test-{i}", **extra)
    for key, sizes in MULTIPART.items():
        up = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="video/mp4", Metadata={"parts": "3"})
        parts = []
        for n, size in enumerate(sizes, 1):
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n,
                                  Body=rnd.randbytes(size))["ETag"]
            parts.append({"PartNumber": n, "ETag": etag})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts})


def seed_versioned(s3, bucket: str, seed: int = 2) -> None:
    rnd = random.Random(seed)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for n in range(3):
        s3.put_object(Bucket=bucket, Key="doc.txt", Body=rnd.randbytes(100 + n), Metadata={"rev": str(n)})
    s3.delete_object(Bucket=bucket, Key="doc.txt")
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=rnd.randbytes(50), Tagging="rev=last")
    s3.put_object(Bucket=bucket, Key="deleted.txt", Body=rnd.randbytes(20))
    s3.delete_object(Bucket=bucket, Key="deleted.txt")
    s3.put_object(Bucket=bucket, Key="z ü+%.bin", Body=rnd.randbytes(200_000))


_HEADERS = ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "ExpiresString")


def snapshot(s3, bucket: str, deep: bool = True) -> dict:
    """{(key, version id): what a client sees of it} for every version and delete marker,
    with each key's history order; bytes as a SHA-256 when `deep`."""
    out, order = {}, {}
    versioned = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    if versioned:
        keep_version_order(s3)      # a key's history order is in the XML, boto3 splits it in two lists
        entries = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            found = {(v["Key"], v["VersionId"]): (v["Key"], v["VersionId"], False, v["LastModified"], v["IsLatest"])
                     for v in page.get("Versions", ())}
            found.update({(m["Key"], m["VersionId"]): (m["Key"], m["VersionId"], True, m["LastModified"], m["IsLatest"])
                          for m in page.get("DeleteMarkers", ())})
            listed = [found[k] for k in page["VersionOrder"]]
            # the latest, then newest first by Last-Modified (moto lists markers after versions, in
            # whole seconds), ties in listing order
            entries += sorted(listed, key=lambda e: (e[0].encode(), not e[4], -e[3].timestamp(), listed.index(e)))
    else:
        entries = [(o["Key"], "null", False, o["LastModified"], True)
                   for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", ())]
    for key, vid, marker, modified, latest in entries:
        if marker:
            out[(key, vid)] = {"delete_marker": True, "last_modified": modified, "latest": latest}
            continue
        args = {"VersionId": vid} if vid != "null" else {}
        got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **args)
        body = got["Body"].read()
        tags = s3.get_object_tagging(Bucket=bucket, Key=key, **args)["TagSet"]
        out[(key, vid)] = {
            "latest": latest, "size": len(body), "sha256": hashlib.sha256(body).hexdigest() if deep else None, "etag": got["ETag"],
            "last_modified": got["LastModified"], "metadata": got.get("Metadata", {}),
            "tags": sorted((t["Key"], t["Value"]) for t in tags),
            **{h: got.get(h) for h in _HEADERS},
            "checksums": {k: v for k, v in got.items() if k.startswith("Checksum") and k != "ChecksumType"},
        }
    for key, vid, *_ in entries:
        order.setdefault(key, []).append(vid)
    return {"versions": out, "order": order}


def put_multipart(s3, bucket: str, key: str, bodies: list[bytes], **extra) -> None:
    """A multipart object of one part per body, so its part boundaries are the test's."""
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n,
                                                      Body=body)["ETag"]} for n, body in enumerate(bodies, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": done})


def seed_checksums(s3, bucket: str, seed: int = 3) -> None:
    """Objects with S3's x-amz-checksum-*: CRC64NVME (S3's default now) on a single PUT and
    as the FULL_OBJECT checksum of a multipart object, SHA256 on another."""
    rnd = random.Random(seed)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="crc64", Body=rnd.randbytes(40_000), ChecksumAlgorithm="CRC64NVME")
    s3.put_object(Bucket=bucket, Key="sha256", Body=rnd.randbytes(300_000), ChecksumAlgorithm="SHA256")
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp-crc64", ChecksumAlgorithm="CRC64NVME",
                                    ChecksumType="FULL_OBJECT")
    parts = []
    for n, size in enumerate(((5 << 20) + 11, 4097), 1):
        got = s3.upload_part(Bucket=bucket, Key="mp-crc64", UploadId=up["UploadId"], PartNumber=n,
                             Body=rnd.randbytes(size), ChecksumAlgorithm="CRC64NVME")
        parts.append({"PartNumber": n, "ETag": got["ETag"], "ChecksumCRC64NVME": got["ChecksumCRC64NVME"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp-crc64", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})


def keep_version_order(client) -> None:
    """boto3 parses ListObjectVersions into separate Versions and DeleteMarkers lists,
    losing how they interleave; a key's history order is in the XML. This hook adds
    `VersionOrder`: [(key, version id)] as the XML has them."""
    if getattr(client, "_pocket_version_order", False):
        return
    client.meta.events.register("before-parse.s3.ListObjectVersions", _version_order)
    client._pocket_version_order = True


def _version_order(response_dict, customized_response_dict, **_):
    if response_dict.get("status_code") != 200:
        return
    try:
        root = ET.fromstring(response_dict["body"])
    except ET.ParseError:
        return
    encoded = any(el.tag.endswith("EncodingType") and (el.text or "") == "url" for el in root)
    order = []
    for el in root:
        if el.tag.endswith("}Version") or el.tag.endswith("}DeleteMarker") or el.tag in ("Version", "DeleteMarker"):
            fields = {child.tag.rpartition("}")[2]: child.text or "" for child in el}
            key = unquote(fields.get("Key", "")) if encoded else fields.get("Key", "")
            order.append((key, fields.get("VersionId")))
    customized_response_dict["VersionOrder"] = order
