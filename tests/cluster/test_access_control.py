"""Who may do what: bucket policies, ACL grants, PublicAccessBlock and OwnershipControls.

Three callers against each operation family: the bucket's owner, a second Pocket user
and an anonymous client (boto3 unsigned). Every refusal is checked for S3's code and
for changing nothing.
"""
import io
import json
import os
import random
import shutil
import subprocess
import urllib.request

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from .harness import ACCESS_KEY, OTHER_ACCESS_KEY, OTHER_EMAIL, OTHER_SECRET_KEY, SECRET_KEY, pocket
from .test_s3_surface import AWS

ALLOW, DENY = "ok", "AccessDenied"


def _body(seed: int, n: int = 3000) -> bytes:
    return random.Random(seed).randbytes(n)


def _clients(cluster):
    owner = cluster.client()
    other = cluster.client(retries=1, user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    anonymous = boto3.client("s3", endpoint_url=cluster.endpoint, region_name="us-east-1",
                             config=BotoConfig(signature_version=UNSIGNED, retries={"max_attempts": 1}))
    return {"owner": owner, "other": other, "anonymous": anonymous}


def _outcome(call) -> str:
    try:
        call()
        return ALLOW
    except ClientError as e:
        return e.response["Error"]["Code"]


def _code(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _policy(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _acls_on(s3, bucket):
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})


def _keys(s3, bucket) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


# --- bucket policies -----------------------------------------------------------------------------

def test_policy_put_get_delete_status_and_malformed(cluster, bucket):
    c = _clients(cluster)
    s3 = c["owner"]
    assert _code(lambda: s3.get_bucket_policy(Bucket=bucket)) == ("NoSuchBucketPolicy", 404)
    private = _policy({"Sid": "bob", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCESS_KEY}:root"},
                       "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"})
    s3.put_bucket_policy(Bucket=bucket, Policy=private)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(private)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    for bad in ("{not json", _policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}),
                _policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                         "Resource": "arn:aws:s3:::someone-elses-bucket/*"}),
                _policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*",
                         "Condition": {"IpAddress": {"aws:SourceIp": "not an address"}}})):
        assert _code(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=bad)) == ("MalformedPolicy", 400)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(private)   # unchanged
    for who in ("other", "anonymous"):
        assert _code(lambda: c[who].get_bucket_policy(Bucket=bucket)) == ("AccessDenied", 403)
        assert _code(lambda: c[who].delete_bucket_policy(Bucket=bucket)) == ("AccessDenied", 403)
        assert _code(lambda: c[who].put_bucket_policy(Bucket=bucket, Policy=private)) == ("AccessDenied", 403)
    public = _policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                      "Resource": f"arn:aws:s3:::{bucket}/*"})
    s3.put_bucket_policy(Bucket=bucket, Policy=public)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    s3.delete_bucket_policy(Bucket=bucket)
    assert _code(lambda: s3.get_bucket_policy(Bucket=bucket)) == ("NoSuchBucketPolicy", 404)


def test_policy_matrix_owner_other_anonymous(cluster, bucket):
    """Public reads under public/, the second user writes and lists under shared/, and a Deny
    on keep/ that overrides every Allow, the owner's own rights included."""
    c = _clients(cluster)
    s3 = c["owner"]
    seeded = {"public/a": _body(1), "private/b": _body(2), "shared/c": _body(3), "keep/d": _body(4)}
    for key, body in seeded.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    arn = f"arn:aws:s3:::{bucket}"
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(
        {"Sid": "public", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"{arn}/public/*"},
        {"Sid": "other-writes", "Effect": "Allow", "Principal": {"AWS": [OTHER_ACCESS_KEY]},
         "Action": ["s3:PutObject", "s3:Get*"], "Resource": f"{arn}/shared/*"},
        {"Sid": "other-lists", "Effect": "Allow", "Principal": {"AWS": OTHER_ACCESS_KEY}, "Action": "s3:ListBucket",
         "Resource": arn, "Condition": {"StringLike": {"s3:prefix": "shared/*"}}},
        {"Sid": "keep", "Effect": "Deny", "Principal": "*", "Action": ["s3:DeleteObject*", "s3:PutObject"],
         "Resource": f"{arn}/keep/*"}))
    ops = {
        "get public": lambda s: s.get_object(Bucket=bucket, Key="public/a")["Body"].read(),
        "get private": lambda s: s.get_object(Bucket=bucket, Key="private/b")["Body"].read(),
        "get shared": lambda s: s.get_object(Bucket=bucket, Key="shared/c")["Body"].read(),
        "put shared": lambda s: s.put_object(Bucket=bucket, Key="shared/new", Body=_body(5)),
        "put private": lambda s: s.put_object(Bucket=bucket, Key="private/new", Body=_body(6)),
        "put keep": lambda s: s.put_object(Bucket=bucket, Key="keep/d", Body=_body(7)),
        "delete keep": lambda s: s.delete_object(Bucket=bucket, Key="keep/d"),
        "delete private": lambda s: s.delete_object(Bucket=bucket, Key="private/b"),
        "list shared": lambda s: s.list_objects_v2(Bucket=bucket, Prefix="shared/"),
        "list all": lambda s: s.list_objects_v2(Bucket=bucket),
        "get policy": lambda s: s.get_bucket_policy(Bucket=bucket),
        "get acl": lambda s: s.get_bucket_acl(Bucket=bucket),
    }
    expected = {
        "owner": {"put keep": DENY, "delete keep": DENY},
        "other": {"get private": DENY, "put private": DENY, "put keep": DENY, "delete keep": DENY,
                  "delete private": DENY, "list all": DENY, "get policy": DENY, "get acl": DENY},
        "anonymous": {op: DENY for op in ops if op != "get public"},
    }
    for who, client in c.items():
        seen = {op: _outcome(lambda: call(client)) for op, call in ops.items() if op != "delete private"}
        want = {op: expected[who].get(op, ALLOW) for op in ops if op != "delete private"}
        assert seen == want, who
    for who in ("other", "anonymous"):
        assert _outcome(lambda: c[who].delete_object(Bucket=bucket, Key="private/b")) == DENY
    assert s3.get_object(Bucket=bucket, Key="public/a")["Body"].read() == seeded["public/a"]
    assert c["anonymous"].get_object(Bucket=bucket, Key="public/a")["Body"].read() == seeded["public/a"]
    assert s3.get_object(Bucket=bucket, Key="keep/d")["Body"].read() == seeded["keep/d"]   # the Deny held
    assert sorted(_keys(s3, bucket)) == ["keep/d", "private/b", "private/new", "public/a", "shared/c", "shared/new"]
    # the owner can always take a policy back, even one that denies it
    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_object(Bucket=bucket, Key="keep/d")
    assert _outcome(lambda: c["anonymous"].get_object(Bucket=bucket, Key="public/a")) == DENY


def test_multipart_and_batch_delete_follow_the_policy_per_key(cluster, bucket):
    c = _clients(cluster)
    s3, other = c["owner"], c["other"]
    arn = f"arn:aws:s3:::{bucket}"
    for seed, key in enumerate(("shared/a", "shared/b", "private/c")):
        s3.put_object(Bucket=bucket, Key=key, Body=_body(90 + seed))
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(
        {"Effect": "Allow", "Principal": {"AWS": OTHER_ACCESS_KEY}, "Action": ["s3:PutObject", "s3:DeleteObject",
                                                                              "s3:AbortMultipartUpload"],
         "Resource": f"{arn}/shared/*"}))
    big = _body(80, 5 << 20) + _body(81, 1000)
    up = other.create_multipart_upload(Bucket=bucket, Key="shared/big")
    parts = [other.upload_part(Bucket=bucket, Key="shared/big", UploadId=up["UploadId"], PartNumber=n,
                               Body=chunk)["ETag"] for n, chunk in ((1, big[:5 << 20]), (2, big[5 << 20:]))]
    other.complete_multipart_upload(Bucket=bucket, Key="shared/big", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(parts)]})
    assert s3.get_object(Bucket=bucket, Key="shared/big")["Body"].read() == big
    assert _outcome(lambda: other.create_multipart_upload(Bucket=bucket, Key="private/big")) == DENY
    answer = other.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "shared/a"}, {"Key": "private/c"}]})
    assert [d["Key"] for d in answer.get("Deleted", [])] == ["shared/a"]
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("private/c", "AccessDenied")]
    assert sorted(_keys(s3, bucket)) == ["private/c", "shared/b", "shared/big"]


def test_policy_conditions(cluster, bucket):
    c = _clients(cluster)
    s3, other, anonymous = c["owner"], c["other"], c["anonymous"]
    arn = f"arn:aws:s3:::{bucket}"
    s3.put_object(Bucket=bucket, Key="open", Body=_body(10), Tagging="class=open")
    s3.put_object(Bucket=bucket, Key="secret", Body=_body(11), Tagging="class=secret")

    def allow(condition, action="s3:GetObject", who="*"):
        principal = "*" if who == "*" else {"AWS": who}
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy({"Effect": "Allow", "Principal": principal,
                                                            "Action": action, "Resource": f"{arn}/*",
                                                            "Condition": condition}))
    allow({"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}})
    assert anonymous.get_object(Bucket=bucket, Key="open")["Body"].read() == _body(10)
    allow({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.0/24"]}})
    assert _outcome(lambda: anonymous.get_object(Bucket=bucket, Key="open")) == DENY
    allow({"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}})
    assert _outcome(lambda: anonymous.get_object(Bucket=bucket, Key="open")) == DENY
    allow({"StringEquals": {"s3:ExistingObjectTag/class": "open"}}, who=OTHER_ACCESS_KEY)
    assert other.get_object(Bucket=bucket, Key="open")["Body"].read() == _body(10)
    assert _outcome(lambda: other.get_object(Bucket=bucket, Key="secret")) == DENY
    allow({"StringLike": {"aws:Referer": "https://app.example/*"}})
    assert _outcome(lambda: anonymous.get_object(Bucket=bucket, Key="open")) == DENY
    url = f"{cluster.endpoint}/{bucket}/open"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Referer": "https://app.example/page"})) as r:
        assert r.read() == _body(10)
    allow({"DateLessThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}})
    assert _outcome(lambda: anonymous.get_object(Bucket=bucket, Key="open")) == DENY
    allow({"DateGreaterThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}})
    assert anonymous.get_object(Bucket=bucket, Key="open")["Body"].read() == _body(10)
    # uploads: only tagged ones, and only handing the object to the bucket owner
    allow({"StringEquals": {"s3:RequestObjectTag/upload": "ok", "s3:x-amz-acl": "bucket-owner-full-control"}},
          action="s3:PutObject", who=f"arn:aws:iam::{OTHER_ACCESS_KEY}:user/uploader")
    assert _outcome(lambda: other.put_object(Bucket=bucket, Key="up1", Body=_body(12))) == DENY
    assert _outcome(lambda: other.put_object(Bucket=bucket, Key="up2", Body=_body(12), Tagging="upload=ok")) == DENY
    other.put_object(Bucket=bucket, Key="up3", Body=_body(12), Tagging="upload=ok", ACL="bucket-owner-full-control")
    assert s3.get_object_acl(Bucket=bucket, Key="up3")["Owner"]["ID"] == ACCESS_KEY   # BucketOwnerEnforced
    # plain HTTP refused for everyone, the owner included (a Deny wins), but the owner can lift it
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy({"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                                        "Resource": [arn, f"{arn}/*"],
                                                        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))
    assert _outcome(lambda: s3.get_object(Bucket=bucket, Key="open")) == DENY
    assert _outcome(lambda: s3.list_objects_v2(Bucket=bucket)) == DENY
    s3.delete_bucket_policy(Bucket=bucket)
    assert sorted(_keys(s3, bucket)) == ["open", "secret", "up3"]


# --- ACLs ----------------------------------------------------------------------------------------

def _grants(acl) -> set:
    return {(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"]) for g in acl["Grants"]}


ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"


def test_grants_by_id_email_and_group(cluster, bucket):
    c = _clients(cluster)
    s3, other, anonymous = c["owner"], c["other"], c["anonymous"]
    _acls_on(s3, bucket)
    s3.put_object(Bucket=bucket, Key="mine", Body=_body(20))
    assert _outcome(lambda: other.list_objects_v2(Bucket=bucket)) == DENY
    # READ and WRITE on the bucket for the second user, by canonical id
    s3.put_bucket_acl(Bucket=bucket, GrantRead=f'id="{OTHER_ACCESS_KEY}"', GrantWrite=f'id="{OTHER_ACCESS_KEY}"',
                      GrantFullControl=f'id="{ACCESS_KEY}"')
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == {
        (ACCESS_KEY, "FULL_CONTROL"), (OTHER_ACCESS_KEY, "READ"), (OTHER_ACCESS_KEY, "WRITE")}
    assert _keys(other, bucket) == ["mine"]
    assert _outcome(lambda: other.get_object(Bucket=bucket, Key="mine")) == DENY   # bucket READ lists only
    other.put_object(Bucket=bucket, Key="theirs", Body=_body(21), ACL="bucket-owner-read")
    theirs = other.get_object_acl(Bucket=bucket, Key="theirs")   # the bucket's owner got READ, not READ_ACP
    assert theirs["Owner"]["ID"] == OTHER_ACCESS_KEY and theirs["Owner"]["DisplayName"] == OTHER_ACCESS_KEY
    assert _grants(theirs) == {(OTHER_ACCESS_KEY, "FULL_CONTROL"), (ACCESS_KEY, "READ")}
    listing = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"]
    assert {o["Key"]: o["Owner"]["ID"] for o in listing} == {"mine": ACCESS_KEY, "theirs": OTHER_ACCESS_KEY}
    assert _outcome(lambda: anonymous.list_objects_v2(Bucket=bucket)) == DENY
    # an object grant by e-mail address, shown as the user's canonical id
    s3.put_object_acl(Bucket=bucket, Key="mine", AccessControlPolicy={
        "Owner": {"ID": ACCESS_KEY}, "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": ACCESS_KEY}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": OTHER_EMAIL}, "Permission": "READ"}]})
    assert _grants(s3.get_object_acl(Bucket=bucket, Key="mine")) == {
        (ACCESS_KEY, "FULL_CONTROL"), (OTHER_ACCESS_KEY, "READ")}
    assert other.get_object(Bucket=bucket, Key="mine")["Body"].read() == _body(20)
    assert _outcome(lambda: other.get_object_acl(Bucket=bucket, Key="mine")) == DENY   # READ is not READ_ACP
    assert _code(lambda: s3.put_object_acl(Bucket=bucket, Key="mine", GrantRead='emailAddress="nobody@example.com"')
                 ) == ("UnresolvableGrantByEmailAddress", 400)
    # canned ACLs
    s3.put_object_acl(Bucket=bucket, Key="mine", ACL="authenticated-read")
    assert _grants(s3.get_object_acl(Bucket=bucket, Key="mine")) == {(ACCESS_KEY, "FULL_CONTROL"), (AUTHENTICATED, "READ")}
    assert other.get_object(Bucket=bucket, Key="mine")["Body"].read() == _body(20)
    assert _outcome(lambda: anonymous.get_object(Bucket=bucket, Key="mine")) == DENY
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    anonymous.put_object(Bucket=bucket, Key="dropbox", Body=_body(22))
    assert s3.get_object(Bucket=bucket, Key="dropbox")["Body"].read() == _body(22)
    s3.put_bucket_acl(Bucket=bucket, ACL="log-delivery-write")
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == {
        (ACCESS_KEY, "FULL_CONTROL"), (LOG_DELIVERY, "WRITE"), (LOG_DELIVERY, "READ_ACP")}
    assert _outcome(lambda: anonymous.put_object(Bucket=bucket, Key="late", Body=b"x")) == DENY
    # refusals: a grantee group that does not exist, canned + grant headers together
    assert _code(lambda: s3.put_bucket_acl(Bucket=bucket, GrantRead='uri="http://example.com/everyone"')
                 ) == ("InvalidArgument", 400)
    assert _code(lambda: s3.put_bucket_acl(Bucket=bucket, ACL="private", GrantRead=f'id="{OTHER_ACCESS_KEY}"')
                 ) == ("InvalidRequest", 400)
    # a canonical id no user has: 400 InvalidArgument, as S3 answers (Pocket stored the grant)
    assert _code(lambda: s3.put_bucket_acl(Bucket=bucket, GrantRead='id="no-such-user"')) == ("InvalidArgument", 400)
    assert _code(lambda: s3.put_object_acl(Bucket=bucket, Key="mine", AccessControlPolicy={
        "Owner": {"ID": ACCESS_KEY}, "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": "_foo"}, "Permission": "FULL_CONTROL"}]})
                 ) == ("InvalidArgument", 400)
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == {
        (ACCESS_KEY, "FULL_CONTROL"), (LOG_DELIVERY, "WRITE"), (LOG_DELIVERY, "READ_ACP")}
    assert sorted(_keys(s3, bucket)) == ["dropbox", "mine", "theirs"]


def test_ownership_controls(cluster, bucket):
    c = _clients(cluster)
    s3, other = c["owner"], c["other"]
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]   # the default for new buckets
    assert _code(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
                 ) == ("AccessControlListNotSupported", 400)
    s3.put_object(Bucket=bucket, Key="k", Body=_body(30), ACL="bucket-owner-full-control")
    assert _grants(s3.get_object_acl(Bucket=bucket, Key="k")) == {(ACCESS_KEY, "FULL_CONTROL")}
    assert _code(lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read")) == ("AccessControlListNotSupported", 400)
    assert _code(lambda: other.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})) == ("AccessDenied", 403)
    assert _code(lambda: s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "Whoever"}]})) == ("MalformedXML", 400)
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    s3.put_object(Bucket=bucket, Key="k", Body=_body(31), ACL="public-read")
    assert c["anonymous"].get_object(Bucket=bucket, Key="k")["Body"].read() == _body(31)
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert _outcome(lambda: c["anonymous"].get_object(Bucket=bucket, Key="k")) == DENY   # ACLs no longer count
    # BucketOwnerPreferred: the bucket's owner takes objects written with bucket-owner-full-control
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    s3.put_bucket_acl(Bucket=bucket, GrantWrite=f'id="{OTHER_ACCESS_KEY}"', GrantFullControl=f'id="{ACCESS_KEY}"')
    other.put_object(Bucket=bucket, Key="handed", Body=_body(32), ACL="bucket-owner-full-control")
    other.put_object(Bucket=bucket, Key="kept", Body=_body(33))
    owners = {o["Key"]: o["Owner"]["ID"] for o in s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"]}
    assert owners == {"k": ACCESS_KEY, "handed": ACCESS_KEY, "kept": OTHER_ACCESS_KEY}
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    assert _code(lambda: s3.get_bucket_ownership_controls(Bucket=bucket)) == ("OwnershipControlsNotFoundError", 404)
    name = f"{bucket}-legacy"
    assert _code(lambda: s3.create_bucket(Bucket=name, ACL="public-read")) == ("InvalidBucketAclWithObjectOwnership", 400)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# --- PublicAccessBlock ---------------------------------------------------------------------------

def test_public_access_block_overrides_acls_and_policies(cluster, bucket):
    c = _clients(cluster)
    s3, other, anonymous = c["owner"], c["other"], c["anonymous"]
    _acls_on(s3, bucket)
    s3.put_object(Bucket=bucket, Key="pub", Body=_body(40), ACL="public-read")
    assert _code(lambda: s3.get_public_access_block(Bucket=bucket)) == ("NoSuchPublicAccessBlockConfiguration", 404)

    def block(**settings):
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            k: settings.get(k, False) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                                "RestrictPublicBuckets")})
    block(BlockPublicAcls=True)
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True
    assert _code(lambda: s3.put_object(Bucket=bucket, Key="new", Body=b"x", ACL="public-read")) == ("AccessDenied", 403)
    assert _code(lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read")) == ("AccessDenied", 403)
    assert _code(lambda: s3.put_object_acl(Bucket=bucket, Key="pub", GrantRead=f'uri="{AUTHENTICATED}"')
                 ) == ("AccessDenied", 403)
    assert anonymous.get_object(Bucket=bucket, Key="pub")["Body"].read() == _body(40)   # existing ACLs still count
    block(IgnorePublicAcls=True)
    assert _outcome(lambda: anonymous.get_object(Bucket=bucket, Key="pub")) == DENY
    assert _outcome(lambda: other.get_object(Bucket=bucket, Key="pub")) == DENY
    public = _policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"})
    block(BlockPublicPolicy=True)
    assert _code(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=public)) == ("AccessDenied", 403)
    assert _code(lambda: s3.get_bucket_policy(Bucket=bucket)) == ("NoSuchBucketPolicy", 404)
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy({   # pinned to an address range: not public
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}))
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=public)
    assert other.get_object(Bucket=bucket, Key="pub")["Body"].read() == _body(40)
    block(RestrictPublicBuckets=True, IgnorePublicAcls=True)
    assert _outcome(lambda: anonymous.get_object(Bucket=bucket, Key="pub")) == DENY
    assert _outcome(lambda: other.get_object(Bucket=bucket, Key="pub")) == DENY
    assert s3.get_object(Bucket=bucket, Key="pub")["Body"].read() == _body(40)
    s3.delete_public_access_block(Bucket=bucket)
    assert anonymous.get_object(Bucket=bucket, Key="pub")["Body"].read() == _body(40)
    assert _keys(s3, bucket) == ["pub"]


# --- a second client, and an index rebuild -------------------------------------------------------

def test_aws_cli_sets_policy_and_block_and_reads_anonymously(cluster, bucket, tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "no-config")}

    def aws(*args, ok=(0,)):
        out = subprocess.run([AWS, "--endpoint-url", cluster.endpoint, *args], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode in ok, out.stderr
        return out
    cluster.client().put_object(Bucket=bucket, Key="site/index.html", Body=_body(50))
    policy = _policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                      "Resource": f"arn:aws:s3:::{bucket}/site/*"})
    aws("s3api", "put-bucket-policy", "--bucket", bucket, "--policy", policy)
    assert json.loads(json.loads(aws("s3api", "get-bucket-policy", "--bucket", bucket).stdout)["Policy"]) == \
        json.loads(policy)
    assert json.loads(aws("s3api", "get-bucket-policy-status", "--bucket", bucket).stdout)["PolicyStatus"] == \
        {"IsPublic": True}
    aws("--no-sign-request", "s3", "cp", f"s3://{bucket}/site/index.html", str(tmp_path / "got"))
    assert (tmp_path / "got").read_bytes() == _body(50)
    aws("s3api", "put-public-access-block", "--bucket", bucket, "--public-access-block-configuration",
        "RestrictPublicBuckets=true")
    refused = aws("--no-sign-request", "s3", "cp", f"s3://{bucket}/site/index.html", str(tmp_path / "again"), ok=(1,))
    assert "403" in refused.stderr and not (tmp_path / "again").exists()


def test_minio_sdk_sets_a_policy_that_opens_a_prefix(cluster, bucket):
    import minio   # in pyproject's test extras
    from minio.error import S3Error
    mc = minio.Minio(f"127.0.0.1:{cluster.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False,
                     region="us-east-1")
    theirs = minio.Minio(f"127.0.0.1:{cluster.port}", access_key=OTHER_ACCESS_KEY, secret_key=OTHER_SECRET_KEY,
                         secure=False, region="us-east-1")
    mc.put_object(bucket, "pub/one", io.BytesIO(_body(70)), 3000)
    mc.put_object(bucket, "priv/two", io.BytesIO(_body(71)), 3000)
    policy = _policy({"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
                      "Resource": [f"arn:aws:s3:::{bucket}/pub/*"]})
    mc.set_bucket_policy(bucket, policy)
    assert json.loads(mc.get_bucket_policy(bucket)) == json.loads(policy)
    assert theirs.get_object(bucket, "pub/one").read() == _body(70)
    with pytest.raises(S3Error) as e:
        theirs.get_object(bucket, "priv/two")
    assert e.value.code == "AccessDenied"
    with urllib.request.urlopen(f"{cluster.endpoint}/{bucket}/pub/one") as r:   # anonymous
        assert r.read() == _body(70)
    mc.delete_bucket_policy(bucket)
    with pytest.raises(S3Error) as e:
        theirs.get_object(bucket, "pub/one")
    assert e.value.code == "AccessDenied"


def test_access_settings_survive_an_index_rebuild(fresh_cluster):
    c = fresh_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="shared", ObjectOwnership="ObjectWriter")
    s3.create_bucket(Bucket="enforced")
    s3.put_bucket_acl(Bucket="shared", GrantRead=f'id="{OTHER_ACCESS_KEY}"', GrantFullControl=f'id="{ACCESS_KEY}"')
    s3.put_object(Bucket="shared", Key="granted", Body=_body(60))
    s3.put_object_acl(Bucket="shared", Key="granted", GrantRead=f'emailAddress="{OTHER_EMAIL}"',
                      GrantFullControl=f'id="{ACCESS_KEY}"')
    policy = _policy({"Effect": "Deny", "Principal": {"AWS": OTHER_ACCESS_KEY}, "Action": "s3:GetObject",
                      "Resource": "arn:aws:s3:::shared/denied/*"},
                     {"Effect": "Allow", "Principal": {"AWS": OTHER_ACCESS_KEY}, "Action": "s3:GetObject",
                      "Resource": "arn:aws:s3:::shared/*"})
    s3.put_bucket_policy(Bucket="shared", Policy=policy)
    s3.put_object(Bucket="shared", Key="denied/x", Body=_body(61))
    s3.put_public_access_block(Bucket="shared", PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True, "RestrictPublicBuckets": False})
    c.stop("gateway")
    shutil.rmtree(f"{c.root}/index")
    pocket(c, "index", "rebuild")   # exits 0, else fails with its output
    c.start_gateway()
    s3 = c.client()
    other = c.client(retries=1, user=(OTHER_ACCESS_KEY, OTHER_SECRET_KEY))
    assert json.loads(s3.get_bucket_policy(Bucket="shared")["Policy"]) == json.loads(policy)
    assert s3.get_public_access_block(Bucket="shared")["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert s3.get_bucket_ownership_controls(Bucket="shared")["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "ObjectWriter"}]
    assert s3.get_bucket_ownership_controls(Bucket="enforced")["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    assert (OTHER_ACCESS_KEY, "READ") in _grants(s3.get_bucket_acl(Bucket="shared"))
    assert (OTHER_ACCESS_KEY, "READ") in _grants(s3.get_object_acl(Bucket="shared", Key="granted"))
    assert sorted(_keys(other, "shared")) == ["denied/x", "granted"]
    assert other.get_object(Bucket="shared", Key="granted")["Body"].read() == _body(60)
    assert _outcome(lambda: other.get_object(Bucket="shared", Key="denied/x")) == DENY
