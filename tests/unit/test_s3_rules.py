"""Pure S3 rules that need no cluster: conditional-request precedence, tag limits,
virtual-host parsing, copy-source parsing and the gateway.domains setting."""
from __future__ import annotations

import pytest
from multidict import CIMultiDict

from storage import config
from storage.s3 import conditions, errors, tagging
from storage.s3.copy import parse_copy_source
from storage.s3.vhost import bucket_from_host, locate

RECORD = {"etag": "abc", "created": 1_700_000_000.7}
BEFORE = "Tue, 14 Nov 2023 22:00:00 GMT"   # earlier than RECORD
AT = "Tue, 14 Nov 2023 22:13:20 GMT"       # the record's second (sub-second part dropped)
AFTER = "Wed, 15 Nov 2023 00:00:00 GMT"


def read(**headers):
    return conditions.check_read(CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}), RECORD)


@pytest.mark.parametrize("headers, outcome", [
    ({}, None),
    ({"If-Match": '"abc"'}, None),
    ({"If-Match": 'W/"abc"'}, None),
    ({"If-Match": '"x", "abc"'}, None),
    ({"If-Match": "*"}, None),
    ({"If-Match": '"x"'}, 412),
    ({"If-Unmodified-Since": AT}, None),
    ({"If-Unmodified-Since": BEFORE}, 412),
    ({"If-Match": '"abc"', "If-Unmodified-Since": BEFORE}, None),   # If-Match decides
    ({"If-None-Match": '"abc"'}, conditions.NOT_MODIFIED),
    ({"If-None-Match": "*"}, conditions.NOT_MODIFIED),
    ({"If-None-Match": '"x"'}, None),
    ({"If-Modified-Since": AT}, conditions.NOT_MODIFIED),
    ({"If-Modified-Since": BEFORE}, None),
    ({"If-None-Match": '"x"', "If-Modified-Since": AFTER}, None),    # If-None-Match decides
    ({"If-None-Match": '"abc"', "If-Modified-Since": BEFORE}, conditions.NOT_MODIFIED),
    ({"If-Match": '"x"', "If-None-Match": '"abc"'}, 412),             # 412 before 304
    ({"If-Modified-Since": "yesterday-ish"}, None),                   # bad dates are ignored
    ({"If-Unmodified-Since": "garbage"}, None),
])
def test_read_conditions(headers, outcome):
    h = CIMultiDict(headers)
    if outcome == 412:
        with pytest.raises(errors.PreconditionFailed):
            conditions.check_read(h, RECORD)
    else:
        assert conditions.check_read(h, RECORD) == outcome


@pytest.mark.parametrize("headers, ok", [
    ({"x-amz-copy-source-if-match": '"abc"'}, True),
    ({"x-amz-copy-source-if-match": '"x"'}, False),
    ({"x-amz-copy-source-if-none-match": '"abc"'}, False),
    ({"x-amz-copy-source-if-modified-since": AFTER}, False),
    ({"x-amz-copy-source-if-unmodified-since": BEFORE}, False),
    ({"x-amz-copy-source-if-match": '"abc"', "x-amz-copy-source-if-unmodified-since": BEFORE}, True),
    ({"x-amz-copy-source-if-none-match": '"x"', "x-amz-copy-source-if-modified-since": AFTER}, True),
])
def test_copy_source_conditions(headers, ok):
    if ok:
        conditions.check_copy_source(CIMultiDict(headers), RECORD)
    else:
        with pytest.raises(errors.PreconditionFailed):
            conditions.check_copy_source(CIMultiDict(headers), RECORD)


def test_write_conditions():
    assert conditions.write_condition(CIMultiDict(), "/b/k", "k") is None
    create_only = conditions.write_condition(CIMultiDict({"If-None-Match": "*"}), "/b/k", "k")
    create_only(None)
    with pytest.raises(errors.PreconditionFailed):
        create_only(RECORD)
    replace = conditions.write_condition(CIMultiDict({"If-Match": '"abc"'}), "/b/k", "k")
    replace(RECORD)
    with pytest.raises(errors.PreconditionFailed):
        replace({**RECORD, "etag": "other"})
    with pytest.raises(errors.NoSuchKey):
        replace(None)
    with pytest.raises(errors.NotImplementedError_):
        conditions.write_condition(CIMultiDict({"If-None-Match": '"abc"'}), "/b/k", "k")


def test_tag_rules():
    assert tagging.from_header("a=1&b=&c%20d=%E2%9C%93") == {"a": "1", "b": "", "c d": "\u2713"}
    assert tagging.validate([("k" * 128, "v" * 256)] + [(f"k{i}", "") for i in range(9)])
    bad = [[(f"k{i}", "") for i in range(11)], [("", "v")], [("k" * 129, "")], [("k", "v" * 257)],
           [("k", "1"), ("k", "2")], [("aws:x", "1")]]
    for pairs in bad:
        with pytest.raises(errors.InvalidTag):
            tagging.validate(pairs)
    assert tagging.from_header("novalue&k=v") == {"novalue": "", "k": "v"}   # S3 reads a bare key so
    with pytest.raises(errors.InvalidTag):
        tagging.from_header("novalue&&=")   # the last is a tag without a key
    with pytest.raises(errors.InvalidArgument):
        tagging.from_header("k=%FF")   # not UTF-8


@pytest.mark.parametrize("host, bucket", [
    ("mybucket.localhost:9000", "mybucket"),
    ("MyBucket.LocalHost", "mybucket"),
    ("a.b.c.s3.example.com", "a.b.c"),
    ("localhost:9000", None),
    ("127.0.0.1:9000", None),
    ("[::1]:9000", None),
    ("evil-localhost:9000", None),
    ("", None),
    (None, None),
])
def test_bucket_from_host(host, bucket):
    assert bucket_from_host(host, ["localhost", "s3.example.com"]) == bucket


def test_locate_virtual_and_path_style():
    assert locate("photos.localhost:9000", "/a%20b/c.jpg?x=1", ["localhost"]) == ("photos", "a b/c.jpg")
    assert locate("photos.localhost", "/", ["localhost"]) == ("photos", "")
    assert locate("photos.localhost", "//lead", ["localhost"]) == ("photos", "/lead")
    assert locate("localhost:9000", "/photos/a%20b", ["localhost"]) == ("photos", "a b")


@pytest.mark.parametrize("value, want", [
    ("bucket/key", ("bucket", "key", None)),
    ("/bucket/dir/a%20b%3Fc", ("bucket", "dir/a b?c", None)),
    ("/bucket/key?versionId=null", ("bucket", "key", "null")),
    ("/bucket/key?versionId=0187f3a2b4c5d6e70123456789abcdef", ("bucket", "key", "0187f3a2b4c5d6e70123456789abcdef")),
])
def test_copy_source(value, want):
    assert parse_copy_source(value) == want


@pytest.mark.parametrize("value", ["bucket", "/bucket/", "/bucket/key?versionId=abc", "/bucket/key?version=null"])
def test_bad_copy_source(value):
    with pytest.raises(errors.InvalidArgument):
        parse_copy_source(value)


def test_domains_setting():
    assert config.Config().virtual_host_domains == ["localhost"]
    cfg = config.from_dict({"gateway": {"domains": ["s3.example.com", "LOCALHOST."], "listen": "pocket.lan:9000"}})
    assert cfg.virtual_host_domains == ["s3.example.com", "localhost", "pocket.lan"]
    assert config.from_dict({"gateway": {"listen": "0.0.0.0:9000"}}).virtual_host_domains == ["localhost"]
    env = config.apply_env(config.Config(), {"POCKET_GATEWAY_DOMAINS": "a.test, b.test"})
    assert env.gateway.domains == ["a.test", "b.test"]
    with pytest.raises(config.ConfigError, match="gateway.domains"):
        config.from_dict({"gateway": {"domains": [1, 2]}})
