"""Unit tests for the versions table (index/versions.py, on each backend) and the commit rules (objects/commits.py)."""
from __future__ import annotations

import asyncio
import random

import uuid

import pytest

from storage.index.ops import NoSuchBucket
from storage.index.versions import NULL, VersionTxn, valid_version_id
from storage.objects.commits import install, remove_version
from storage.objects.ids import new_id

B = "bkt"   # the bucket conftest.py's `ix` creates


def rec(key, versioned=True, marker=False, created=None):
    vid = new_id()
    r = {"bucket": B, "key": key, "version_id": vid, "created": created or 0.0, "etag": vid[:8], "size": 1}
    if versioned:
        r["versioned"] = True
    if marker:
        r["delete_marker"] = True
    return r


def set_versioning(ix, state):
    ix.write(lambda ops: ops.put_bucket(B, {**ops.get_bucket(B), "versioning": state}))


def put(ix, r):
    return ix.write(lambda ops: install(ops, B, r["key"], r))


def listing(ix, **kw):
    """Every (key, s3 version id, is latest) via pages of `page` entries."""
    page_size = kw.pop("page", 1000)
    out, km, vm = [], "", ""
    while True:
        page = ix.list_versions(B, key_marker=km, version_id_marker=vm, max_keys=page_size, **kw)
        out += [(v.key, v.version_id, v.is_latest) for v in page.versions]
        out += [(p, None, None) for p in page.common_prefixes]
        if not page.is_truncated:
            return out
        km, vm = page.next_key_marker, page.next_version_id_marker


def test_unversioned_bucket_keeps_one_version_and_no_rows(ix):
    a, b = rec("k", versioned=False), rec("k", versioned=False)
    assert put(ix, a) == []
    assert put(ix, b) == [a]
    assert ix.get_object(B, "k") == b
    assert ix.key_history(B, "k") == []
    assert listing(ix) == [("k", NULL, True)]
    assert ix.get_version(B, "k", NULL) == b and ix.get_version(B, "k", b["version_id"]) is None


def test_enabled_keeps_every_version_and_the_legacy_null_one(ix):
    legacy = rec("k", versioned=False)
    put(ix, legacy)
    set_versioning(ix, "Enabled")
    v1, v2 = rec("k"), rec("k")
    assert put(ix, v1) == [] and put(ix, v2) == []
    assert [r["version_id"] for r in ix.key_history(B, "k")] == [v2["version_id"], v1["version_id"], legacy["version_id"]]
    assert ix.get_object(B, "k") == v2
    assert listing(ix) == [("k", v2["version_id"], True), ("k", v1["version_id"], False), ("k", NULL, False)]
    marker = rec("k", marker=True)
    put(ix, marker)
    assert ix.get_object(B, "k") is None and ix.latest_version(B, "k") == marker
    assert ix.list_objects(B).contents == []
    assert not ix.bucket_is_empty(B)
    # removing the marker brings v2 back; removing v2 makes v1 current
    assert ix.write(lambda ops: remove_version(ops, B, "k", marker["version_id"])) == marker
    assert ix.get_object(B, "k") == v2
    ix.write(lambda ops: remove_version(ops, B, "k", v2["version_id"]))
    assert ix.get_object(B, "k") == v1
    assert ix.write(lambda ops: remove_version(ops, B, "k", v2["version_id"])) is None  # already gone


def test_suspended_null_writes_replace_only_the_null_version(ix):
    set_versioning(ix, "Enabled")
    v1 = rec("k")
    put(ix, v1)
    set_versioning(ix, "Suspended")
    n1, n2 = rec("k", versioned=False), rec("k", versioned=False)
    assert put(ix, n1) == []
    assert put(ix, n2) == [n1]
    assert ix.get_version(B, "k", NULL) == n2
    late = {**rec("k", versioned=False), "version_id": "0" * 32}  # an older null racing in late loses
    assert put(ix, late) == [late]
    marker = rec("k", versioned=False, marker=True)
    assert put(ix, marker) == [n2]
    assert listing(ix) == [("k", NULL, True), ("k", v1["version_id"], False)]


def test_listing_order_paging_and_prefixes(ix):
    set_versioning(ix, "Enabled")
    rng = random.Random(7)
    keys = ["a", "a/b", "b/1", "b/2", "é", "z" * 399, "z" * 400, "z" * 401 + "1", "z" * 401 + "0", "zz" + "q" * 600]
    legacy = "legacy-only"
    ix.write(lambda ops: ops.put_object(B, legacy, rec(legacy, versioned=False)))
    want = []
    for key in sorted(keys + [legacy], key=lambda k: k.encode()):
        if key == legacy:
            want.append((key, NULL, True))
            continue
        made = [rec(key, marker=rng.random() < 0.3) for _ in range(rng.randrange(1, 4))]
        for r in made:
            put(ix, r)
        want += [(key, r["version_id"], i == 0) for i, r in enumerate(reversed(made))]
    assert listing(ix) == want
    for size in (1, 2, 3, 7):
        assert listing(ix, page=size) == want
    assert listing(ix, prefix="b/") == [w for w in want if w[0].startswith("b/")]
    top = listing(ix, delimiter="/", page=2)
    assert [t[0] for t in top if t[1] is None] == ["a/", "b/"]
    assert {t[0] for t in top if t[1] is not None} == {k for k in keys + [legacy] if "/" not in k}


def test_iter_versions_reports_noncurrent_since(ix):
    set_versioning(ix, "Enabled")
    made = [rec("k", created=float(t)) for t in (10, 20, 30)]
    for r in made:
        put(ix, r)
    got = [(v.record["created"], v.is_latest, v.noncurrent_since) for v in ix.iter_versions(B, batch=1)]
    assert got == [(30.0, True, None), (20.0, False, 30.0), (10.0, False, 20.0)]

    async def walk():   # the asyncio form (lifecycle passes) pages the same way
        return [(v.record["created"], v.is_latest, v.noncurrent_since) async for v in ix.aiter_versions(B, batch=1)]
    assert asyncio.run(walk()) == got


def test_valid_version_ids_and_missing_bucket(ix):
    assert valid_version_id(NULL) and valid_version_id(new_id())
    assert not valid_version_id("") and not valid_version_id("ABC") and not valid_version_id(new_id()[:31] + "/")
    # ids a migrated version keeps from its source: AWS's, a UUID (moto, MinIO)
    assert valid_version_id("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH") and valid_version_id(str(uuid.UUID(int=7)))
    with pytest.raises(NoSuchBucket):
        ix.write(lambda ops: install(ops, "nope", "k", rec("k")))
    with pytest.raises(NoSuchBucket):
        ix.write(lambda ops: VersionTxn(ops).list_versions("nope"))
