"""The source listing without botocore (storage/migrate/list_http.py) against real S3
servers, moto and SeaweedFS: awkward keys, every version and delete marker in each key's
order, pages cut small, common prefixes, and refusals said in one line. boto3's own
listing of the same bucket is what it must equal."""
from __future__ import annotations

import socket

import pytest

from storage.migrate import listing
from storage.migrate.list_http import SourceError
from storage.migrate.source import client as source_client
from storage.migrate.state import Source

from .migrate_data import keep_version_order
from .sources import start_moto, start_seaweedfs

# what breaks hand-made listings: spaces, "+" and "%" (EncodingType=url decodes "+" as a
# space), XML's own characters, unicode, a "~", a key that is another's prefix (SeaweedFS, a
# file system underneath, keeps no key with a leading or trailing "/")
AWKWARD = ["plain", "with space", "plus+sign", "pct%41not-decoded", "both + and %2B", "xml<&>'\"chars",
           "ünïcødé/ключ/鍵", "tilde~x", "dir/x", "dir/x.y", "a/b/c/d e+f%g"]


@pytest.fixture(scope="module", params=["moto", "seaweedfs"])
def server(request, tmp_path_factory):
    start = {"moto": start_moto, "seaweedfs": start_seaweedfs}[request.param]
    source = start(str(tmp_path_factory.mktemp(request.param)))
    try:
        s3 = source.client()
        s3.create_bucket(Bucket="awkward")
        for n, key in enumerate(AWKWARD):
            s3.put_object(Bucket="awkward", Key=key, Body=b"x" * n)
        s3.create_bucket(Bucket="kept")
        s3.put_bucket_versioning(Bucket="kept", VersioningConfiguration={"Status": "Enabled"})
        for key in ("doc + draft.txt", "ünï/v", "z"):
            for n in range(3):
                s3.put_object(Bucket="kept", Key=key, Body=f"{key} {n}".encode())
            s3.delete_object(Bucket="kept", Key=key)
        s3.put_object(Bucket="kept", Key="z", Body=b"back again")
        yield source
    finally:
        source.close()


@pytest.fixture
def client(server, monkeypatch):
    """Pocket's source client, keys from the environment as an operator's would be."""
    for name, value in server.credentials_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    return source_client(Source(bucket="awkward", endpoint=server.endpoint))


def _boto_objects(s3, bucket: str) -> list[tuple]:
    return [(o["Key"], o["Size"], o["ETag"].strip('"'), o["LastModified"].timestamp())
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", ())]


def _boto_versions(s3, bucket: str) -> list[tuple]:
    keep_version_order(s3)
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        found = {(v["Key"], v["VersionId"]): (v["Key"], v["VersionId"], False, v["Size"], v["LastModified"],
                                              v["IsLatest"]) for v in page.get("Versions", ())}
        found.update({(m["Key"], m["VersionId"]): (m["Key"], m["VersionId"], True, 0, m["LastModified"],
                                                   m["IsLatest"]) for m in page.get("DeleteMarkers", ())})
        listed = [found[k] for k in page["VersionOrder"]]
        out += sorted(listed, key=lambda e: (e[0].encode(), not e[5], -e[4].timestamp(), listed.index(e)))
    return [(k, vid, marker, size) for k, vid, marker, size, _, _ in out]


def test_keys_sizes_etags_and_times_equal_boto3s_whatever_the_page_size(server, client):
    want = _boto_objects(server.client(), "awkward")
    assert sorted(k for k, *_ in want) == sorted(AWKWARD)
    for page_size in (None, 1, 4):
        got = [(e.key, e.size, e.etag, e.last_modified)
               for page in client.lister.pages("awkward", False, page_size=page_size) for e in page.entries]
        assert got == want, f"page size {page_size}"
    # by prefix, the copy's ranges (start after a key) and a key's own history
    assert [e.key for page in client.lister.pages("awkward", False, prefix="dir/") for e in page.entries] == \
        ["dir/x", "dir/x.y"]
    after = [e.key for page in client.lister.pages("awkward", False, start_after="plain", page_size=2)
             for e in page.entries]
    assert after == [k for k, *_ in want if k.encode() > b"plain"]
    assert [h["size"] for h in listing.key_history(client, "awkward", False, "dir/x")] == [AWKWARD.index("dir/x")]


def test_the_whole_bucket_by_prefixes_in_parallel_is_every_key_once(server, client):
    got = listing.list_bucket(client, "awkward", versioned=False, parallel=3)
    assert sorted((e.key, e.size) for e in got) == sorted((k, n) for n, k in enumerate(AWKWARD))
    sizes, total = listing.first_keys(client, "awkward", 5)
    keys = list(sizes)
    assert [sizes[k] for k in keys] == [AWKWARD.index(k) for k in keys]
    assert keys[:5] == [k for k, *_ in _boto_objects(server.client(), "awkward")][:5]
    assert total == sum(AWKWARD.index(k) for k in keys)


def test_versions_and_delete_markers_come_in_each_keys_order(server, client):
    assert listing.versioning_of(client, "kept") == "Enabled"
    assert listing.versioning_of(client, "awkward") == ""
    want = _boto_versions(server.client(), "kept")
    assert len(want) == 3 * 4 + 1 and sum(m for _, _, m, _ in want) == 3
    for page_size in (None, 2, 5):
        listed = [e for page in client.lister.pages("kept", True, page_size=page_size) for e in page.entries]
        got = [(e.key, e.version_id, e.delete_marker, e.size) for e in listed]
        if page_size is None or server.name != "moto":
            assert got == want, f"page size {page_size}"
        else:
            # moto pages a key's versions (all in the same second) in another order than it
            # lists them whole, and not always with the same one marked latest: the set is all
            # that its small pages can be held to
            assert sorted(got) == sorted(want), f"page size {page_size}"
    latest = {e.key: e for e in listing.list_bucket(client, "kept", True) if e.is_latest}
    assert latest["z"].size == len(b"back again") and latest["doc + draft.txt"].delete_marker
    history = listing.key_history(client, "kept", True, "ünï/v")
    assert [h["delete_marker"] for h in history] == [True, False, False, False]


def test_refusals_name_the_bucket_and_the_s3_error(server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    wrong = source_client(Source(bucket="awkward", endpoint=server.endpoint))
    if server.name != "moto":        # moto accepts any signature
        with pytest.raises(SourceError, match=r"ListObjectsV2 of s3://awkward at .* answered 403 "
                                              r"(SignatureDoesNotMatch|AccessDenied)"):
            listing.list_bucket(wrong, "awkward", False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    right = source_client(Source(bucket="nope", endpoint=server.endpoint))
    with pytest.raises(SourceError, match=r"s3://nope .* answered 404 NoSuchBucket"):
        listing.versioning_of(right, "nope") or listing.list_bucket(right, "nope", False)
    gone = source_client(Source(bucket="awkward", endpoint="http://127.0.0.1:9"))
    with pytest.raises(SourceError, match="no answer after 1 tries"):
        listing.list_bucket(gone, "awkward", False)


def test_without_direct_settings_botocore_resolves_and_the_listing_is_the_same(server, client, tmp_path,
                                                                                monkeypatch):
    """An AWS config file could name a region, a CA bundle or keys: then botocore resolves
    the endpoint and credentials (made at the first need) and the listing is unchanged."""
    config = tmp_path / "config"
    config.write_text("[default]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    via_botocore = source_client(Source(bucket="awkward", endpoint=server.endpoint))
    assert via_botocore.direct is None and client.direct is not None
    assert listing.list_bucket(via_botocore, "kept", True) == listing.list_bucket(client, "kept", True)
    assert listing.list_bucket(via_botocore, "awkward", False) == listing.list_bucket(client, "awkward", False)


@pytest.mark.parametrize("server", ["seaweedfs"], indirect=True)   # moto answers Connection: close
def test_a_keep_alive_connection_the_server_dropped_is_opened_again(server, client, monkeypatch):
    """Servers close idle keep-alive connections; the next page must not fail for it, even
    with no retries left (AWS_MAX_ATTEMPTS=1: only the reconnect can save it). Against
    SeaweedFS only: moto closes every connection itself, so none is kept to drop."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    first = [e.key for page in client.lister.pages("awkward", False) for e in page.entries]
    dropped = 0
    for conn in [c for kept in client.lister.http._idle.values() for c in kept]:     # as the listing left them
        if conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
            dropped += 1
    assert dropped == 1
    assert [e.key for page in client.lister.pages("awkward", False) for e in page.entries] == first
