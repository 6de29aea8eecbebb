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


# --- canned ACLs and anonymous reads ---------------------------------------------------------

def _anonymous(cluster, method, path):
    return browser(method, f"{cluster.endpoint}{path}")


def _acls_on(s3, bucket):
    """New buckets have ACLs disabled (BucketOwnerEnforced), as on S3 since 2023."""
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})


def _grants(policy):
    return sorted((g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"]) for g in policy["Grants"])


def test_object_acl_public_read(cluster, bucket):
    s3 = cluster.client()
    _acls_on(s3, bucket)
    s3.put_object(Bucket=bucket, Key="public", Body=b"for everyone", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="private", Body=b"mine")
    assert _anonymous(cluster, "GET", f"/{bucket}/public")[::2] == (200, b"for everyone")
    assert _anonymous(cluster, "HEAD", f"/{bucket}/public")[0] == 200
    for method, path in (("GET", f"/{bucket}/private"), ("GET", f"/{bucket}/missing"), ("GET", f"/{bucket}"),
                         ("PUT", f"/{bucket}/public"), ("DELETE", f"/{bucket}/public"), ("GET", "/"),
                         ("GET", f"/{bucket}/public?acl"), ("GET", f"/{bucket}/public?tagging")):
        status, _, body = _anonymous(cluster, method, path)
        assert status == 403, (method, path)
        assert method == "HEAD" or _xml_code(body) == "AccessDenied"
    policy = s3.get_object_acl(Bucket=bucket, Key="public")
    assert _grants(policy) == sorted([(policy["Owner"]["ID"], "FULL_CONTROL"),
                                      ("http://acs.amazonaws.com/groups/global/AllUsers", "READ")])
    assert _grants(s3.get_object_acl(Bucket=bucket, Key="private")) == [(policy["Owner"]["ID"], "FULL_CONTROL")]
    # another user reads a public object too, but cannot change it or its ACL
    other = cluster.client(retries=1, user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    assert other.get_object(Bucket=bucket, Key="public")["Body"].read() == b"for everyone"
    with pytest.raises(ClientError) as e:
        other.put_object_acl(Bucket=bucket, Key="public", ACL="private")
    assert _code(e) == ("AccessDenied", 403)
    # PutObjectAcl flips it both ways
    s3.put_object_acl(Bucket=bucket, Key="public", ACL="private")
    assert _anonymous(cluster, "GET", f"/{bucket}/public")[0] == 403
    s3.put_object_acl(Bucket=bucket, Key="private", ACL="public-read")
    assert _anonymous(cluster, "GET", f"/{bucket}/private")[::2] == (200, b"mine")


def test_bucket_acl_public_read(cluster, bucket):
    s3 = cluster.client()
    _acls_on(s3, bucket)
    s3.put_object(Bucket=bucket, Key="a/1", Body=b"one")
    assert _anonymous(cluster, "GET", f"/{bucket}?list-type=2")[0] == 403
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert _grants(s3.get_bucket_acl(Bucket=bucket))[1] == (
        "http://acs.amazonaws.com/groups/global/AllUsers", "READ")
    status, _, body = _anonymous(cluster, "GET", f"/{bucket}?list-type=2")
    assert status == 200 and b"<Key>a/1</Key>" in body
    assert _anonymous(cluster, "GET", f"/{bucket}/a/1")[0] == 403   # READ on a bucket lists it, as on S3
    status, _, body = _anonymous(cluster, "GET", f"/{bucket}/a/2")
    assert (status, _xml_code(body)) == (404, "NoSuchKey")  # public-read includes listing, so absence is no secret
    assert _anonymous(cluster, "PUT", f"/{bucket}/a/2")[0] == 403
    assert _anonymous(cluster, "DELETE", f"/{bucket}/a/1")[0] == 403
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert _anonymous(cluster, "GET", f"/{bucket}/a/1")[0] == 403
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["a/1"]


def test_acl_on_create_copy_and_multipart(cluster, bucket):
    s3 = cluster.client()
    _acls_on(s3, bucket)
    name = f"{bucket}-pub"
    s3.create_bucket(Bucket=name, ACL="public-read", ObjectOwnership="ObjectWriter")
    s3.put_object(Bucket=name, Key="k", Body=b"v")
    status, _, body = _anonymous(cluster, "GET", f"/{name}?list-type=2")
    assert status == 200 and b"<Key>k</Key>" in body
    assert _anonymous(cluster, "GET", f"/{name}/k")[0] == 403   # the object's own ACL is private
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, ACL="public-read")
    assert _anonymous(cluster, "GET", f"/{bucket}/dst")[::2] == (200, b"copied")
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ACL="public-read")
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"parts")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert _anonymous(cluster, "GET", f"/{bucket}/mp")[::2] == (200, b"parts")


def test_acls_refused_while_disabled_change_nothing(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    before = cluster.archive_files()
    owner = s3.get_object_acl(Bucket=bucket, Key="k")["Owner"]
    attempts = [
        (lambda: s3.put_object(Bucket=bucket, Key="new", Body=b"x", ACL="public-read-write"),
         "AccessControlListNotSupported"),
        (lambda: s3.put_object(Bucket=bucket, Key="new", Body=b"x", GrantRead='uri="http://acs.amazonaws.com/'
                               'groups/global/AllUsers"'), "AccessControlListNotSupported"),
        (lambda: s3.put_object_acl(Bucket=bucket, Key="k", ACL="authenticated-read"), "AccessControlListNotSupported"),
        (lambda: s3.put_bucket_acl(Bucket=bucket, GrantFullControl=f'id="{OTHER_ACCESS_KEY}"'),
         "AccessControlListNotSupported"),
        (lambda: s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={"Owner": owner, "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": OTHER_ACCESS_KEY}, "Permission": "READ"}]}),
         "AccessControlListNotSupported"),
        (lambda: s3.put_object_acl(Bucket=bucket, Key="missing", ACL="public-read"), "NoSuchKey"),
        (lambda: s3.create_bucket(Bucket=f"{bucket}-rw", ACL="public-read-write"),
         "InvalidBucketAclWithObjectOwnership"),
    ]
    for call, code in attempts:
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == code
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    assert len(s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]) == 1
    assert f"{bucket}-rw" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert cluster.archive_files() == before
    # with ACLs on, the XML form of a canned ACL is accepted
    _acls_on(s3, bucket)
    s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"},
        {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
         "Permission": "READ"}]})
    assert _anonymous(cluster, "GET", f"/{bucket}/k")[::2] == (200, b"v")


def test_cors_and_acls_survive_an_index_rebuild(fresh_cluster):
    import shutil
    from . import forkserver
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="site", ACL="public-read", ObjectOwnership="ObjectWriter")
    s3.put_bucket_cors(Bucket="site", CORSConfiguration=CORS)
    s3.create_bucket(Bucket="files", ObjectOwnership="ObjectWriter")
    s3.put_bucket_cors(Bucket="files", CORSConfiguration=CORS)
    s3.delete_bucket_cors(Bucket="files")
    s3.put_object(Bucket="files", Key="at-put", Body=b"1", ACL="public-read")
    s3.put_object(Bucket="files", Key="changed", Body=b"2")
    s3.put_object_acl(Bucket="files", Key="changed", ACL="public-read")
    s3.put_object(Bucket="files", Key="revoked", Body=b"3", ACL="public-read")
    s3.put_object_acl(Bucket="files", Key="revoked", ACL="private")
    c.stop("gateway")
    shutil.rmtree(f"{c.root}/index")
    out = forkserver.run(["index", "rebuild", "--config", c.config, "--json"], timeout=120)
    assert out.returncode == 0, out.stderr
    c.start_gateway()
    s3 = c.client()
    assert s3.get_bucket_cors(Bucket="site")["CORSRules"] == CORS["CORSRules"]
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket="files")
    assert _code(e) == ("NoSuchCORSConfiguration", 404)
    assert len(s3.get_bucket_acl(Bucket="site")["Grants"]) == 2
    assert len(s3.get_bucket_acl(Bucket="files")["Grants"]) == 1
    public = {k: _anonymous(c, "GET", f"/files/{k}")[0] for k in ("at-put", "changed", "revoked")}
    assert public == {"at-put": 200, "changed": 200, "revoked": 403}


def test_copy_from_another_users_public_object(cluster, bucket):
    s3 = cluster.client()
    other = cluster.client(retries=1, user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    mine = f"{bucket}-theirs"
    other.create_bucket(Bucket=mine)
    _acls_on(s3, bucket)
    s3.put_object(Bucket=bucket, Key="shared", Body=b"public bytes", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="secret", Body=b"private bytes")
    other.copy_object(Bucket=mine, Key="copy", CopySource={"Bucket": bucket, "Key": "shared"})
    assert other.get_object(Bucket=mine, Key="copy")["Body"].read() == b"public bytes"
    with pytest.raises(ClientError) as e:
        other.copy_object(Bucket=mine, Key="stolen", CopySource={"Bucket": bucket, "Key": "secret"})
    assert _code(e) == ("AccessDenied", 403)
    assert [o["Key"] for o in other.list_objects_v2(Bucket=mine)["Contents"]] == ["copy"]
