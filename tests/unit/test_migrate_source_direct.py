"""When the source's endpoint, region and keys are known without botocore (source.direct_settings)
and when they are botocore's to resolve; and a listing page as AWS writes it."""
from __future__ import annotations

import pytest

from storage.migrate.credentials import store_keys
from storage.migrate.list_http import SourceError, parse_page
from storage.migrate.source import direct_settings
from storage.migrate.state import Source


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE",
                 "AWS_CREDENTIAL_EXPIRATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-env")
    return monkeypatch


def test_an_explicit_endpoint_with_keys_in_the_environment_is_direct(env):
    d = direct_settings(Source(bucket="b", endpoint="http://127.0.0.1:9000/base/"), None)
    assert (d.origin, d.path, d.region, d.access_key, d.secret_key, d.token, d.ca_file) == \
        ("http://127.0.0.1:9000", "/base", "us-east-1", "AKENV", "secret-env", None, None)
    env.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    env.setenv("AWS_SESSION_TOKEN", "tok")
    d = direct_settings(Source(bucket="b", endpoint="https://s3.example.net", region=None), None)
    assert (d.region, d.token) == ("eu-west-3", "tok") and d.ca_file.endswith(".pem")
    assert direct_settings(Source(bucket="b", endpoint="https://s3.example.net", region="ap-south-1"),
                           None).region == "ap-south-1"


def test_keys_given_on_the_command_line_win_over_the_environment(env, tmp_path):
    keys = str(tmp_path / "keys.json")
    store_keys(keys, Source(bucket="b", endpoint="http://127.0.0.1:9000"), "AKFILE", "secret-file", "file-token")
    d = direct_settings(Source(bucket="b", endpoint="http://127.0.0.1:9000"), keys)
    assert (d.access_key, d.secret_key, d.token) == ("AKFILE", "secret-file", "file-token")


@pytest.mark.parametrize("why", ["aws", "virtual", "profile", "env-profile", "config-file", "no-keys", "expiring"])
def test_what_only_botocore_knows_is_left_to_it(env, tmp_path, why):
    src = Source(bucket="b", endpoint="http://127.0.0.1:9000")
    if why == "aws":
        src = Source(bucket="b")
    elif why == "virtual":
        src = Source(bucket="b", endpoint="http://127.0.0.1:9000", addressing="virtual")
    elif why == "profile":
        src = Source(bucket="b", endpoint="http://127.0.0.1:9000", profile="prod")
    elif why == "env-profile":
        env.setenv("AWS_PROFILE", "prod")
    elif why == "config-file":
        (tmp_path / "config").write_text("[default]\nregion = eu-west-1\n")
        env.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    elif why == "no-keys":
        env.delenv("AWS_SECRET_ACCESS_KEY")
    elif why == "expiring":
        env.setenv("AWS_CREDENTIAL_EXPIRATION", "2030-01-01T00:00:00Z")
    assert direct_settings(src, None) is None


def test_a_page_as_aws_writes_it_url_encoded_and_truncated():
    """EncodingType=url: a space may come as "+", a "+" as "%2B" (botocore decodes with
    unquote_plus); the next page starts after NextKeyMarker decoded, at NextVersionIdMarker."""
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker><NextKeyMarker>a+b%2Bc%C3%BC</NextKeyMarker>
<NextVersionIdMarker>v/2</NextVersionIdMarker><MaxKeys>2</MaxKeys><EncodingType>url</EncodingType>
<IsTruncated>true</IsTruncated>
<DeleteMarker><Key>a+b%2Bc%C3%BC</Key><VersionId>v/3</VersionId><IsLatest>true</IsLatest>
<LastModified>2026-12-03T08:00:02.000Z</LastModified><Owner><ID>x</ID></Owner></DeleteMarker>
<Version><Key>a+b%2Bc%C3%BC</Key><VersionId>v/2</VersionId><IsLatest>false</IsLatest>
<LastModified>2026-12-03T08:00:01.500Z</LastModified><ETag>&quot;0123-2&quot;</ETag><Size>12</Size>
<Owner><ID>x</ID></Owner><StorageClass>GLACIER</StorageClass></Version>
<CommonPrefixes><Prefix>dir%2F+x/</Prefix></CommonPrefixes></ListVersionsResult>"""
    page = parse_page(body, versioned=True)
    marker, version = page.entries
    assert (marker.key, marker.version_id, marker.delete_marker, marker.is_latest) == ("a b+cü", "v/3", True, True)
    assert (version.key, version.size, version.etag, version.storage_class, version.parts) == \
        ("a b+cü", 12, "0123-2", "GLACIER", 2)
    assert version.last_modified == 1796284801.5 and not version.is_latest
    assert page.prefixes == ["dir/ x/"]
    assert page.next == {"key-marker": "a b+cü", "version-id-marker": "v/2"}
    with pytest.raises(SourceError, match="without NextContinuationToken"):
        parse_page(b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", versioned=False)
