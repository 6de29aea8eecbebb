"""POST object: browser form uploads, signed by boto3's generate_presigned_post (SigV4) or by
hand (SigV2), sent with requests as a browser would send the form."""
import base64
import datetime as dt
import hashlib
import hmac
import html
import json
import random
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.exceptions import ClientError

from .harness import ACCESS_KEY, SECRET_KEY, pocket


def body(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _error(resp) -> tuple[int, str, str]:
    root = ET.fromstring(resp.content)
    return resp.status_code, root.findtext("Code"), root.findtext("Message")


def _absent(cluster, bucket, key):
    with pytest.raises(ClientError) as e:
        cluster.client().head_object(Bucket=bucket, Key=key)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def _v4(cluster, **kw):
    """boto3's presigned POST is SigV2 by default against a custom endpoint; SigV4 when asked."""
    return cluster.client(signature_version="s3v4", **kw)


def _post(cluster, bucket, fields, data, filename="photo.jpg", file_type="image/jpeg"):
    """The form as a browser sends it: the fields in order, the file last."""
    return requests.post(f"{cluster.endpoint}/{bucket}", data=fields,
                         files={"file": (filename, data, file_type)}, allow_redirects=False, timeout=60)


def test_presigned_post_stores_the_file_with_its_fields(cluster, bucket):
    s3 = _v4(cluster)
    data = body(300_000, 1)
    fields = {"Content-Type": "text/plain", "Cache-Control": "max-age=60",
              "Content-Disposition": "attachment", "x-amz-meta-color": "blue", "success_action_status": "201"}
    conditions = [{"Content-Type": "text/plain"}, ["starts-with", "$Cache-Control", "max-age"],
                  {"Content-Disposition": "attachment"}, {"x-amz-meta-color": "blue"},
                  {"success_action_status": "201"}, ["content-length-range", 1, 1 << 20]]
    post = s3.generate_presigned_post(bucket, "uploads/${filename}", Fields=fields, Conditions=conditions)
    assert post["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    resp = _post(cluster, bucket, post["fields"], data, filename="report.txt")
    assert resp.status_code == 201, resp.text
    root = ET.fromstring(resp.content)   # no namespace, as S3 answers (s3-tests reads find("Key"))
    assert root.tag == "PostResponse"
    assert root.findtext("Bucket") == bucket and root.findtext("Key") == "uploads/report.txt"
    assert root.findtext("Location") == f"{cluster.endpoint}/{bucket}/uploads/report.txt"
    assert root.findtext("ETag") == f'"{hashlib.md5(data).hexdigest()}"' == resp.headers["ETag"]
    got = s3.get_object(Bucket=bucket, Key="uploads/report.txt")
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/plain" and got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == "attachment" and got["Metadata"] == {"color": "blue"}


def test_default_status_is_204_and_redirect_carries_the_etag(cluster, bucket):
    s3 = cluster.client()
    data = body(1000, 2)
    for signer in (s3, _v4(cluster)):   # SigV2 and SigV4
        post = signer.generate_presigned_post(bucket, "plain")
        resp = _post(cluster, bucket, post["fields"], data)
        assert resp.status_code == 204 and resp.content == b""
    assert resp.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    back = "https://app.example/done?x=1"
    post = s3.generate_presigned_post(bucket, "redirected", Fields={"success_action_redirect": back},
                                      Conditions=[{"success_action_redirect": back}])
    resp = _post(cluster, bucket, post["fields"], data[::-1])
    assert resp.status_code == 303
    target = urlsplit(resp.headers["Location"])
    assert target.netloc == "app.example" and target.path == "/done"
    query = parse_qs(target.query)
    assert query["x"] == ["1"] and query["bucket"] == [bucket] and query["key"] == ["redirected"]
    assert query["etag"] == [f'"{hashlib.md5(data[::-1]).hexdigest()}"']
    assert s3.get_object(Bucket=bucket, Key="redirected")["Body"].read() == data[::-1]


def test_fields_sent_as_file_parts_are_still_fields(cluster, bucket):
    """`requests.post(files=fields)` sends every field as a part with a filename (s3-tests does):
    the file is the part named `file`, wherever filenames appear; Pocket took the first such
    part for the file and answered 400 'must contain a field named key'."""
    post = _v4(cluster).generate_presigned_post(bucket, "as-files/${filename}")
    data = body(2000, 21)
    parts = [(name, (name, value)) for name, value in post["fields"].items()]
    parts.append(("file", ("scan.pdf", data, "application/pdf")))
    resp = requests.post(f"{cluster.endpoint}/{bucket}", files=parts, timeout=60)
    assert resp.status_code == 204, resp.text
    assert cluster.client().get_object(Bucket=bucket, Key="as-files/scan.pdf")["Body"].read() == data


def test_content_length_range_refuses_and_stores_nothing(cluster, bucket):
    s3 = _v4(cluster)
    post = s3.generate_presigned_post(bucket, "sized", Conditions=[["content-length-range", 100, 5000]])
    big = _post(cluster, bucket, post["fields"], body(200_000, 3))
    assert _error(big)[:2] == (400, "EntityTooLarge")
    small = _post(cluster, bucket, post["fields"], body(99, 4))
    assert _error(small)[:2] == (400, "EntityTooSmall")
    _absent(cluster, bucket, "sized")
    assert _post(cluster, bucket, post["fields"], body(5000, 5)).status_code == 204


@pytest.mark.parametrize("change, message", [
    ({"key": "elsewhere/x"}, 'Policy Condition failed: ["starts-with", "$key", "uploads/"]'),
    ({"x-amz-meta-sneaky": "1"}, "Extra input fields: x-amz-meta-sneaky"),
    ({"Content-Type": "text/html"}, 'Policy Condition failed: ["starts-with", "$Content-Type", "image/"]'),
])
def test_fields_outside_the_policy_are_access_denied(cluster, bucket, change, message):
    post = _v4(cluster).generate_presigned_post(bucket, "uploads/${filename}",
                                                    Fields={"Content-Type": "image/png"},
                                                    Conditions=[["starts-with", "$Content-Type", "image/"]])
    fields = {**post["fields"], **change}
    status, code, text = _error(_post(cluster, bucket, fields, body(10, 6)))
    assert (status, code) == (403, "AccessDenied")
    assert text == f"Invalid according to Policy: {message}"
    assert not cluster.client().list_objects_v2(Bucket=bucket).get("Contents")


def test_signature_and_expiry_are_checked(cluster, bucket):
    s3 = _v4(cluster)
    post = s3.generate_presigned_post(bucket, "k")
    forged = {**post["fields"], "x-amz-signature": "0" * 64}
    assert _error(_post(cluster, bucket, forged, b"x"))[:2] == (403, "SignatureDoesNotMatch")
    expired = s3.generate_presigned_post(bucket, "k", ExpiresIn=-10)
    status, code, text = _error(_post(cluster, bucket, expired["fields"], b"x"))
    assert (status, code, text) == (403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    other = _v4(cluster, user=("nobody", "x"))
    stranger = other.generate_presigned_post(bucket, "k")
    assert _error(_post(cluster, bucket, stranger["fields"], b"x"))[:2] == (403, "InvalidAccessKeyId")
    _absent(cluster, bucket, "k")


def _v2_form(bucket: str, key: str, extra: dict, conditions: list) -> dict:
    expiration = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    document = {"expiration": expiration,
                "conditions": [{"bucket": bucket}, {"key": key}, *conditions]}
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    signature = base64.b64encode(hmac.new(SECRET_KEY.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    return {"key": key, **extra, "AWSAccessKeyId": ACCESS_KEY, "policy": policy, "signature": signature}


@pytest.fixture
def acl_bucket(cluster):
    """A bucket with ACLs on (ObjectWriter): new buckets are BucketOwnerEnforced, which refuses them."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    cluster.client().create_bucket(Bucket=name, ObjectOwnership="ObjectWriter")
    return name


def test_sigv2_form_with_tagging_and_public_acl(cluster, acl_bucket):
    bucket = acl_bucket
    tags = "<Tagging><TagSet><Tag><Key>team</Key><Value>ops</Value></Tag></TagSet></Tagging>"
    extra = {"acl": "public-read", "tagging": tags, "x-amz-meta-note": "h\u00e9"}
    form = _v2_form(bucket, "v2/obj", extra, [{"acl": "public-read"}, {"tagging": tags},
                                               ["eq", "$x-amz-meta-note", "h\u00e9"]])
    data = body(70_000, 7)
    resp = _post(cluster, bucket, form, data)
    assert resp.status_code == 204, resp.text
    s3 = cluster.client()
    assert s3.get_object_tagging(Bucket=bucket, Key="v2/obj")["TagSet"] == [{"Key": "team", "Value": "ops"}]
    # a UTF-8 form value comes back as S3 returns non-ASCII metadata: RFC 2047 encoded
    assert s3.head_object(Bucket=bucket, Key="v2/obj")["Metadata"] == {"note": "=?UTF-8?B?aMOp?="}
    anonymous = requests.get(f"{cluster.endpoint}/{bucket}/v2/obj", timeout=30)
    assert anonymous.status_code == 200 and anonymous.content == data
    bad = {**form, "signature": base64.b64encode(b"\0" * 20).decode()}
    assert _error(_post(cluster, bucket, bad, data))[:2] == (403, "SignatureDoesNotMatch")


def test_a_public_acl_field_is_refused_while_acls_are_disabled(cluster, bucket):
    """The default BucketOwnerEnforced bucket: a form asking for a public ACL stores nothing."""
    form = _v2_form(bucket, "pub", {"acl": "public-read"}, [{"acl": "public-read"}])
    assert _error(_post(cluster, bucket, form, body(100, 12)))[:2] == (400, "AccessControlListNotSupported")
    _absent(cluster, bucket, "pub")


def test_anonymous_post_needs_a_public_read_write_bucket(cluster, acl_bucket):
    bucket = acl_bucket
    data = body(4096, 8)
    assert _error(_post(cluster, bucket, {"key": "anon"}, data))[:2] == (403, "AccessDenied")
    _absent(cluster, bucket, "anon")
    cluster.client().put_bucket_acl(Bucket=bucket, ACL="public-read")   # READ lists; it does not write
    assert _error(_post(cluster, bucket, {"key": "anon"}, data))[:2] == (403, "AccessDenied")
    _absent(cluster, bucket, "anon")
    cluster.client().put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    resp = _post(cluster, bucket, {"key": "anon", "Content-Type": "application/x-anon"}, data)
    assert resp.status_code == 204, resp.text
    got = cluster.client().get_object(Bucket=bucket, Key="anon")
    assert got["Body"].read() == data and got["ContentType"] == "application/x-anon"


def test_public_read_write_does_not_open_an_enforced_bucket(cluster, acl_bucket):
    """Switching the bucket to BucketOwnerEnforced turns its ACL off: the anonymous form is refused."""
    s3 = cluster.client()
    s3.put_bucket_acl(Bucket=acl_bucket, ACL="public-read-write")
    s3.put_bucket_ownership_controls(Bucket=acl_bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert _error(_post(cluster, acl_bucket, {"key": "anon"}, body(100, 13)))[:2] == (403, "AccessDenied")
    _absent(cluster, acl_bucket, "anon")


def _bucket_policy(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_anonymous_post_allowed_by_a_bucket_policy_and_refused_by_a_deny(cluster, bucket):
    """The bucket stays BucketOwnerEnforced (no ACL): only its policy opens it to anonymous forms."""
    s3 = cluster.client()
    data = body(2048, 14)
    assert _error(_post(cluster, bucket, {"key": "drop/a"}, data))[:2] == (403, "AccessDenied")
    _absent(cluster, bucket, "drop/a")
    allow = {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/drop/*"}
    s3.put_bucket_policy(Bucket=bucket, Policy=_bucket_policy(allow))
    resp = _post(cluster, bucket, {"key": "drop/a", "Content-Type": "text/x-anon"}, data)
    assert resp.status_code == 204, resp.text
    got = s3.get_object(Bucket=bucket, Key="drop/a")
    assert got["Body"].read() == data and got["ContentType"] == "text/x-anon"
    # the Allow names drop/*: a key elsewhere is still refused
    assert _error(_post(cluster, bucket, {"key": "other/a"}, data))[:2] == (403, "AccessDenied")
    _absent(cluster, bucket, "other/a")
    # an explicit Deny wins over the Allow, for the anonymous form and the owner's signed one alike
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/drop/denied/*"}
    s3.put_bucket_policy(Bucket=bucket, Policy=_bucket_policy(allow, deny))
    assert _error(_post(cluster, bucket, {"key": "drop/denied/b"}, data))[:2] == (403, "AccessDenied")
    signed = _v4(cluster).generate_presigned_post(bucket, "drop/denied/c")
    assert _error(_post(cluster, bucket, signed["fields"], data))[:2] == (403, "AccessDenied")
    for key in ("drop/denied/b", "drop/denied/c"):
        _absent(cluster, bucket, key)
    assert _post(cluster, bucket, {"key": "drop/still-open"}, data).status_code == 204


def test_malformed_forms_are_refused(cluster, bucket):
    post = _v4(cluster).generate_presigned_post(bucket, "m")
    not_a_form = requests.post(f"{cluster.endpoint}/{bucket}", data=b"key=m", timeout=30,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert _error(not_a_form)[:2] == (400, "MalformedPOSTRequest")
    no_file = requests.post(f"{cluster.endpoint}/{bucket}", files={k: (None, v) for k, v in post["fields"].items()},
                            timeout=30)
    assert _error(no_file)[:2] == (400, "InvalidArgument")
    no_key = {k: v for k, v in post["fields"].items() if k != "key"}
    assert _error(_post(cluster, bucket, no_key, b"x"))[:2] == (400, "InvalidArgument")
    boundary = uuid.uuid4().hex
    cut = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                  for k, v in post["fields"].items())
    cut = (cut + f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n").encode()
    truncated = requests.post(f"{cluster.endpoint}/{bucket}", data=cut + body(1000, 9), timeout=30,
                              headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert _error(truncated)[:2] == (400, "IncompleteBody")
    huge_field = {**post["fields"], "x-ignore-pad": "p" * (100 << 10)}
    assert _error(_post(cluster, bucket, huge_field, b"x"))[:2] == (400, "MaxPostPreDataLengthExceededError")
    _absent(cluster, bucket, "m")


def test_posted_object_survives_index_rebuild(fresh_cluster):
    s3 = fresh_cluster.client()
    s3.create_bucket(Bucket="forms")
    data = body(200_000, 10)
    post = s3.generate_presigned_post("forms", "kept", Fields={"x-amz-meta-from": "form", "Content-Type": "a/b"},
                                      Conditions=[{"x-amz-meta-from": "form"}, {"Content-Type": "a/b"}])
    assert _post(fresh_cluster, "forms", post["fields"], data).status_code == 204
    fresh_cluster.stop("gateway")
    shutil.rmtree(f"{fresh_cluster.root}/index")
    pocket(fresh_cluster, "index", "rebuild")
    fresh_cluster.start_gateway()
    got = fresh_cluster.client().get_object(Bucket="forms", Key="kept")
    assert got["Body"].read() == data and got["Metadata"] == {"from": "form"} and got["ContentType"] == "a/b"


def _chromium() -> str:
    found = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    assert found, "chromium is not installed: run scripts/install-test-tools (apt package chromium)"
    return found


def test_headless_chromium_submits_the_form(cluster, bucket, tmp_path):
    """A real browser builds the multipart body: its boundary, quoting and part order."""
    s3 = _v4(cluster)
    data = body(150_000, 11)
    post = s3.generate_presigned_post(bucket, "browser/${filename}", Fields={"success_action_status": "201"},
                                      Conditions=[{"success_action_status": "201"}])
    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in post["fields"].items())
    page = tmp_path / "upload.html"
    page.write_text(f"""<html><body>
<form id="f" method="post" enctype="multipart/form-data" action="{post['url']}">{hidden}
<input type="file" name="file" id="file"></form>
<script>
const bytes = Uint8Array.from(atob("{base64.b64encode(data).decode()}"), c => c.charCodeAt(0));
const picked = new DataTransfer();
picked.items.add(new File([bytes], "photo one.bin", {{type: "application/octet-stream"}}));
document.getElementById("file").files = picked.files;
document.getElementById("f").submit();
</script></body></html>""")
    # --virtual-time-budget lets the submission and its response load before the DOM is dumped.
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                          "--no-first-run", "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert "<Key>browser/photo one.bin</Key>" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    got = s3.get_object(Bucket=bucket, Key="browser/photo one.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


def test_a_large_form_upload_streams_with_bounded_gateway_memory(cluster, bucket):
    """256 MiB through a form: the gateway never holds the file. Its working set is ~50 MiB
    (test_streaming.py), so 100 MiB fails on a leak of a fifth of the bytes. A client this
    fast once found the MD5 chain lagging and holding every segment it owed."""
    from .test_streaming import _rss_kib, _Sampler
    blocks, block = 256, 1 << 20
    post = _v4(cluster).generate_presigned_post(bucket, "big/${filename}",
                                                Conditions=[["content-length-range", 1, blocks * block]])
    boundary = uuid.uuid4().hex
    head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in post["fields"].items())
    head += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
    tail = f"\r\n--{boundary}--\r\n".encode()
    want = hashlib.md5()

    def stream():
        yield head.encode()
        for n in range(blocks):
            piece = body(block, 1000 + n)
            want.update(piece)
            yield piece
        yield tail

    baseline = _rss_kib(cluster.gateway_pid())
    sampler = _Sampler(cluster.gateway_pid())
    sampler.start()
    started = time.monotonic()
    try:
        resp = requests.post(f"{cluster.endpoint}/{bucket}", data=stream(), timeout=600,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    finally:
        sampler.running = False
        sampler.join()
    seconds = time.monotonic() - started
    assert resp.status_code == 204, resp.text
    assert resp.headers["ETag"] == f'"{want.hexdigest()}"'
    grew_mib = (sampler.peak - baseline) / 1024
    print(f"\nPOST {blocks} MiB in {seconds:.1f}s; gateway RSS baseline {baseline // 1024} MiB, "
          f"peak growth {grew_mib:.0f} MiB")
    assert grew_mib < 100, f"gateway RSS grew by {grew_mib:.0f} MiB while a {blocks} MiB form streamed"
    head_obj = cluster.client().head_object(Bucket=bucket, Key="big/big.bin")
    assert head_obj["ContentLength"] == blocks * block


def test_minio_sdk_post_policy(cluster, bucket):
    """A second signer: MinIO's PostPolicy (SigV4, its own field order and condition forms)."""
    import minio
    from minio.datatypes import PostPolicy
    mc = minio.Minio(f"127.0.0.1:{cluster.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False,
                     region="us-east-1")
    policy = PostPolicy(bucket, dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10))
    policy.add_starts_with_condition("key", "minio/")
    policy.add_equals_condition("Content-Type", "image/png")
    policy.add_content_length_range_condition(1, 100_000)
    fields = mc.presigned_post_policy(policy)
    data = body(50_000, 30)
    resp = _post(cluster, bucket, {**fields, "key": "minio/pic.png", "Content-Type": "image/png"}, data)
    assert resp.status_code == 204, resp.text
    got = cluster.client().get_object(Bucket=bucket, Key="minio/pic.png")
    assert got["Body"].read() == data and got["ContentType"] == "image/png"
    refused = _post(cluster, bucket, {**fields, "key": "minio/too-big", "Content-Type": "image/png"},
                    body(100_001, 31))
    assert _error(refused)[:2] == (400, "EntityTooLarge")
    _absent(cluster, bucket, "minio/too-big")


def test_post_into_a_versioned_bucket_makes_versions(cluster, bucket):
    s3 = _v4(cluster)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    post = s3.generate_presigned_post(bucket, "v")
    first, second = body(3000, 40), body(3000, 41)
    ids = []
    for data in (first, second):
        resp = _post(cluster, bucket, post["fields"], data)
        assert resp.status_code == 204, resp.text
        ids.append(resp.headers["x-amz-version-id"])
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=ids[0])["Body"].read() == first
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == second
