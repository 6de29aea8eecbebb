"""Unit tests for storage.index.uploads: uploads and parts as range scans, on each backend."""
from __future__ import annotations

import random

import pytest

from storage.index.ops import NoSuchBucket
from storage.index.uploads import NoSuchUpload, UploadTxn
from storage.objects.ids import new_id

B = "bkt"   # the bucket conftest.py's `ix` creates


def create(ix, key, bucket=B):
    upload = {"upload_id": new_id(), "bucket": bucket, "key": key, "initiated": 0, "attrs": {}}
    ix.write(lambda ops: UploadTxn(ops).create_upload(bucket, key, upload))
    return upload


def view(ix, fn):
    with ix.read() as ops:
        return fn(UploadTxn(ops))


def list_all(ix, max_uploads, **kw):
    """Concatenate pages using the next markers, as a client paginator does."""
    uploads, cps, km, um = [], [], "", ""
    for _ in range(10_000):
        page = view(ix, lambda u: u.list_uploads(B, key_marker=km, upload_id_marker=um,
                                                 max_uploads=max_uploads, **kw))
        assert len(page.uploads) + len(page.common_prefixes) <= max_uploads
        uploads += [(u["key"], u["upload_id"]) for u in page.uploads]
        cps += page.common_prefixes
        if not page.is_truncated:
            return uploads, cps
        km, um = page.next_key_marker, page.next_upload_id_marker
    raise AssertionError("pagination did not terminate")


def test_parts_replace_list_and_delete(ix):
    up = create(ix, "k")
    uid = up["upload_id"]
    def put(n, version):
        return ix.write(lambda ops: UploadTxn(ops).put_part(B, "k", uid, n, {"part_number": n, "version_id": version}))
    for n in (3, 1, 2, 10):
        assert put(n, "v1") is None
    assert put(2, "v3") == {"part_number": 2, "version_id": "v1"}
    assert put(2, "v2") == {"part_number": 2, "version_id": "v2"}  # older than what is stored: refused
    assert view(ix, lambda u: u.get_part(uid, 2))["version_id"] == "v3"
    parts, more = view(ix, lambda u: u.list_parts(uid, 0, 2))
    assert [p["part_number"] for p in parts] == [1, 2] and more
    parts, more = view(ix, lambda u: u.list_parts(uid, 2, 2))
    assert [p["part_number"] for p in parts] == [3, 10] and not more
    assert view(ix, lambda u: u.list_parts(uid, 10, 5)) == ([], False)
    other = create(ix, "k")  # parts of another upload never leak in
    ix.write(lambda ops: UploadTxn(ops).put_part(B, "k", other["upload_id"], 1, {"part_number": 1, "version_id": "v"}))
    assert len(view(ix, lambda u: u.all_parts(uid))) == 4
    removed = ix.write(lambda ops: UploadTxn(ops).delete_upload(B, "k", uid))
    assert sorted(p["part_number"] for p in removed) == [1, 2, 3, 10]
    assert view(ix, lambda u: u.all_parts(uid)) == []
    assert view(ix, lambda u: u.get_upload(B, "k", uid)) is None
    assert ix.write(lambda ops: UploadTxn(ops).delete_upload(B, "k", uid)) is None
    assert len(view(ix, lambda u: u.all_parts(other["upload_id"]))) == 1


def test_unknown_uploads_and_buckets(ix):
    up = create(ix, "k")
    assert view(ix, lambda u: u.get_upload(B, "other", up["upload_id"])) is None  # id of another key
    assert view(ix, lambda u: u.get_upload(B, "k", "not-hex")) is None
    with pytest.raises(NoSuchUpload):
        ix.write(lambda ops: UploadTxn(ops).put_part(B, "k", new_id(), 1, {"version_id": "v"}))
    with pytest.raises(NoSuchBucket):
        create(ix, "k", bucket="nope")


def test_listing_order_markers_and_long_keys(ix):
    rng = random.Random(7)
    long_a, long_b = "L" * 400, "L" * 400 + "x"
    keys = ["a", "a/b", "ab", "b", "é", long_a, long_a + "a", long_a + "b" * 300, long_b, "z"]
    expected = []
    for _ in range(3):  # several uploads per key, created in a shuffled order
        for key in rng.sample(keys, len(keys)):
            expected.append((key, create(ix, key)["upload_id"]))
    expected.sort(key=lambda kv: (kv[0].encode(), kv[1]))
    for size in (1, 2, 3, 7, 1000):
        assert list_all(ix, size) == (expected, [])
    page = view(ix, lambda u: u.list_uploads(B, key_marker="ab"))
    assert [u["key"] for u in page.uploads] == [k for k, _ in expected if k.encode() > b"ab"]
    first_ab = next(uid for k, uid in expected if k == "ab")
    page = view(ix, lambda u: u.list_uploads(B, key_marker="ab", upload_id_marker=first_ab))
    assert [(u["key"], u["upload_id"]) for u in page.uploads] == [kv for kv in expected if
                                                                   (kv[0].encode(), kv[1]) > (b"ab", first_ab)]
    assert view(ix, lambda u: u.list_uploads(B, max_uploads=0)).uploads == []


def test_listing_prefix_and_delimiter(ix):
    for key in ["photos/2024/a", "photos/2024/b", "photos/2025/c", "photos/x", "readme", "zeta/a"]:
        create(ix, key)
    page = view(ix, lambda u: u.list_uploads(B, delimiter="/"))
    assert page.common_prefixes == ["photos/", "zeta/"] and [u["key"] for u in page.uploads] == ["readme"]
    page = view(ix, lambda u: u.list_uploads(B, prefix="photos/", delimiter="/"))
    assert page.common_prefixes == ["photos/2024/", "photos/2025/"]
    assert [u["key"] for u in page.uploads] == ["photos/x"]
    uploads, cps = list_all(ix, 1, prefix="photos/", delimiter="/")
    assert cps == ["photos/2024/", "photos/2025/"] and [k for k, _ in uploads] == ["photos/x"]
    assert [k for k, _ in list_all(ix, 2, prefix="photos/2024/")[0]] == ["photos/2024/a", "photos/2024/b"]
