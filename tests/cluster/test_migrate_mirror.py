"""What a dual-write bucket mirrors to the source beyond bytes: SSE-S3 and SSE-KMS writes
reach it encrypted the way the client asked; canned ACLs, legal holds and retentions are
applied there too. What cannot be mirrored is refused with a 400 that says why, both sides
unchanged: SSE-C writes (the key is the client's, Pocket does not keep it) and ACLs with
explicit grants (they name Pocket's users).

Real processes: moto as the source, an embedded Pocket with a master key and a KMS key.
"""
from __future__ import annotations

import base64
import hashlib
import random

import pytest
from botocore.exceptions import ClientError

from .harness import ACCESS_KEY
from .sources import enable, moto_and_pocket

BUCKET = "moving"
KMS_KEY = base64.b64encode(random.Random(41).randbytes(32)).decode()
ENCRYPTION = {"master_key": base64.b64encode(random.Random(40).randbytes(32)).decode(),
              "kms_keys": [f"app-key:{KMS_KEY}"], "allow_http_customer_keys": True}


def _keys(s3) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", ())}


def test_sse_writes_are_mirrored_encrypted_and_sse_c_is_refused(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True,
                         sections={"encryption": ENCRYPTION}) as (source, c):
        src, rnd = source.client(), random.Random(42)
        src.create_bucket(Bucket=BUCKET)
        enable(c, BUCKET, source.endpoint)
        gw = c.client()
        s3_body, kms_body = rnd.randbytes(5000), rnd.randbytes(7000)
        gw.put_object(Bucket=BUCKET, Key="s3", Body=s3_body, ServerSideEncryption="AES256")
        gw.put_object(Bucket=BUCKET, Key="kms", Body=kms_body, ServerSideEncryption="aws:kms",
                      SSEKMSKeyId="app-key")
        at_source = src.head_object(Bucket=BUCKET, Key="s3")
        assert at_source["ServerSideEncryption"] == "AES256"
        at_source = src.head_object(Bucket=BUCKET, Key="kms")
        assert at_source["ServerSideEncryption"] == "aws:kms" and "app-key" in at_source["SSEKMSKeyId"]
        assert src.get_object(Bucket=BUCKET, Key="s3")["Body"].read() == s3_body
        assert src.get_object(Bucket=BUCKET, Key="kms")["Body"].read() == kms_body

        key = rnd.randbytes(32)
        customer = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(key).decode(),
                    "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(key).digest()).decode()}
        with pytest.raises(ClientError) as e:
            gw.put_object(Bucket=BUCKET, Key="secret", Body=b"only mine", **customer)
        err = e.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400 and err["Error"]["Code"] == "InvalidRequest"
        assert "SSE-C" in err["Error"]["Message"] and "migrat" in err["Error"]["Message"]
        with pytest.raises(ClientError) as e:
            gw.create_multipart_upload(Bucket=BUCKET, Key="secret-mp", **customer)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert _keys(src) == {"s3", "kms"}
        assert not src.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
        gw.create_bucket(Bucket="not-migrating")            # nothing to mirror there: SSE-C works
        gw.put_object(Bucket="not-migrating", Key="secret", Body=b"only mine", **customer)
        assert gw.get_object(Bucket="not-migrating", Key="secret", **customer)["Body"].read() == b"only mine"


def test_acl_and_object_lock_changes_are_mirrored_or_refused(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True) as (source, c):
        src, gw = source.client(), c.client()
        src.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        gw.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        for side in (src, gw):     # ACLs are off in new buckets, as in S3
            side.put_bucket_ownership_controls(Bucket=BUCKET, OwnershipControls={
                "Rules": [{"ObjectOwnership": "ObjectWriter"}]})
        enable(c, BUCKET, source.endpoint)
        gw.put_object(Bucket=BUCKET, Key="doc", Body=random.Random(43).randbytes(1234))
        gw.put_object_acl(Bucket=BUCKET, Key="doc", ACL="authenticated-read")
        grants = src.get_object_acl(Bucket=BUCKET, Key="doc")["Grants"]
        assert any(g["Grantee"].get("URI", "").endswith("/AuthenticatedUsers") and g["Permission"] == "READ"
                   for g in grants), grants
        gw.put_object_legal_hold(Bucket=BUCKET, Key="doc", LegalHold={"Status": "ON"})
        assert src.get_object_legal_hold(Bucket=BUCKET, Key="doc")["LegalHold"]["Status"] == "ON"
        gw.put_object_retention(Bucket=BUCKET, Key="doc", Retention={"Mode": "GOVERNANCE",
                                                                     "RetainUntilDate": "2031-01-01T00:00:00Z"})
        held = src.head_object(Bucket=BUCKET, Key="doc")     # (moto's GetObjectRetention answers 500)
        assert held["ObjectLockMode"] == "GOVERNANCE" and held["ObjectLockRetainUntilDate"].year == 2031

        with pytest.raises(ClientError) as e:
            gw.put_object_acl(Bucket=BUCKET, Key="doc", GrantRead=f'id="{ACCESS_KEY}"',
                              GrantFullControl=f'id="{ACCESS_KEY}"')
        err = e.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400 and "canned ACL" in err["Error"]["Message"]
        assert src.get_object_acl(Bucket=BUCKET, Key="doc")["Grants"] == grants
