"""Browsers and the public web: bucket CORS (preflight and actual requests), canned ACLs
and anonymous reads.

A browser is played by an aiohttp client sending what a browser sends: an unsigned
OPTIONS preflight with Origin and Access-Control-Request-*, then the real request to a
presigned URL with its Origin header. Refused requests are checked for the S3 error
code and for changing nothing.
"""
import asyncio

import aiohttp
import pytest
from botocore.exceptions import ClientError

from .harness import OTHER_ACCESS_KEY, OTHER_SECRET_KEY

APP = "https://app.example"
CORS = {"CORSRules": [
    {"ID": "app", "AllowedOrigins": [APP], "AllowedMethods": ["GET", "PUT", "HEAD"],
     "AllowedHeaders": ["content-type", "x-amz-meta-*"], "ExposeHeaders": ["ETag", "x-amz-request-id"],
     "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["https://*.cdn.example"], "AllowedMethods": ["GET"]},
]}


def _code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def browser(method: str, url: str, headers: dict | None = None, data: bytes | None = None):
    """One request as a browser would send it: (status, headers, body)."""
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.request(method, url, headers=headers or {}, data=data) as r:
                return r.status, r.headers, await r.read()
    return asyncio.run(go())


def _xml_code(body: bytes) -> str:
    text = body.decode()
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""


# --- CORS configuration ----------------------------------------------------------------------

def test_cors_configuration_round_trip(cluster, bucket):
    s3 = cluster.client()
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert _code(e) == ("NoSuchCORSConfiguration", 404)
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=CORS)
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == CORS["CORSRules"]
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert _code(e) == ("NoSuchCORSConfiguration", 404)


def test_bad_cors_configurations_change_nothing(cluster, bucket):
    s3 = cluster.client()
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=CORS)
    bad = [
        ({"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]}, ("InvalidRequest", 400)),
        ({"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}] * 101}, ("MalformedXML", 400)),
        ({"CORSRules": [{"AllowedOrigins": ["https://*.*.example"], "AllowedMethods": ["GET"]}]},
         ("InvalidRequest", 400)),
        ({"CORSRules": []}, ("MalformedXML", 400)),
    ]
    for config, expected in bad:
        with pytest.raises(ClientError) as e:
            s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=config)
        assert _code(e) == expected
    other = cluster.client(retries=1, user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    with pytest.raises(ClientError) as e:
        other.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]})
    assert _code(e) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        other.delete_bucket_cors(Bucket=bucket)
    assert _code(e) == ("AccessDenied", 403)
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == CORS["CORSRules"]


# --- the browser flow ------------------------------------------------------------------------

def test_browser_upload_with_presigned_urls(cluster, bucket):
    s3 = cluster.client()
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=CORS)
    url = f"{cluster.endpoint}/{bucket}/photo.jpg"
    status, headers, _ = browser("OPTIONS", url, {
        "Origin": APP, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "Content-Type, X-Amz-Meta-Album"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "PUT" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "content-type, x-amz-meta-album"
    assert headers["Access-Control-Max-Age"] == "600"
    assert headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"

    presigner = cluster.client(signature_version="s3v4")
    put_url = presigner.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "photo.jpg"},
                                               ExpiresIn=300)
    data = bytes(range(256)) * 400
    status, headers, _ = browser("PUT", put_url, {"Origin": APP}, data)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == APP
    assert headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    assert "Origin" in headers["Vary"]

    get_url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "photo.jpg"},
                                               ExpiresIn=300)
    status, headers, body = browser("GET", get_url, {"Origin": APP})
    assert (status, body) == (200, data)
    assert headers["Access-Control-Allow-Origin"] == APP
    # an origin under the wildcard rule may GET, gets the headers, but not PUT
    status, headers, _ = browser("GET", get_url, {"Origin": "https://eu.cdn.example"})
    assert (status, headers["Access-Control-Allow-Origin"]) == (200, "https://eu.cdn.example")
    # errors carry the CORS headers too, so the page can read them
    status, headers, body = browser("GET", get_url.replace("photo.jpg?", "nothing.jpg?"), {"Origin": APP})
    assert status == 403 and headers["Access-Control-Allow-Origin"] == APP


def test_preflight_refusals_change_nothing(cluster, bucket):
    s3 = cluster.client()
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=CORS)
    s3.put_object(Bucket=bucket, Key="doc", Body=b"original")
    url = f"{cluster.endpoint}/{bucket}/doc"
    refused = [
        {"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"},
        {"Origin": "https://eu.cdn.example", "Access-Control-Request-Method": "PUT"},
        {"Origin": APP, "Access-Control-Request-Method": "DELETE"},
        {"Origin": APP, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-secret"},
    ]
    for headers in refused:
        status, got, body = browser("OPTIONS", url, headers)
        assert (status, _xml_code(body)) == (403, "AccessForbidden"), headers
        assert b"CORSResponse: This CORS request is not allowed." in body
        assert "Access-Control-Allow-Origin" not in got
    status, _, body = browser("OPTIONS", url, {"Access-Control-Request-Method": "PUT"})
    assert (status, _xml_code(body)) == (400, "BadRequest")
    # a bucket without CORS rules refuses every preflight
    s3.delete_bucket_cors(Bucket=bucket)
    status, _, _ = browser("OPTIONS", url, {"Origin": APP, "Access-Control-Request-Method": "GET"})
    assert status == 403
    # the actual request from a foreign origin is answered (S3 does) but carries no CORS headers
    status, headers, _ = browser("PUT", url, {"Origin": "https://evil.example"}, b"evil")
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"original"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["doc"]
