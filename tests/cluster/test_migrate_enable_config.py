"""`pocket migrate enable` carries the source bucket's tags, policy, default encryption,
public access block and object ownership, and reports what it cannot carry (storage/migrate/carry.py says what that is and why).

Real processes: moto as the source, an embedded Pocket with a master key and one KMS key.
"""
from __future__ import annotations

import base64
import json
import random

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from .harness import pocket
from .migrate_world import index_of
from .sources import moto_and_pocket

KMS_KEY = base64.b64encode(random.Random(51).randbytes(32)).decode()
ENCRYPTION = {"master_key": base64.b64encode(random.Random(50).randbytes(32)).decode(),
              "kms_keys": [f"app-key:{KMS_KEY}"]}
ACCOUNT = "arn:aws:iam::123456789012:root"


def _policy(bucket: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "PublicReads", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/public/*"},
        {"Sid": "Partner", "Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "s3:*",
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}


def _enable(c, source, bucket: str, *extra) -> dict:
    out = pocket(c, "migrate", "enable", bucket, "--source-endpoint", source.endpoint, "--source-addressing",
                 "path", *extra, "--json")[1]
    assert out["buckets"][0]["ok"], out
    return out["buckets"][0]


def test_enable_carries_tags_policy_and_encryption_renamed_and_reports_the_rest(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True,
                         sections={"encryption": ENCRYPTION}) as (source, c):
        src, gw = source.client(), c.client()
        src.create_bucket(Bucket="old-name")
        src.put_bucket_tagging(Bucket="old-name", Tagging={"TagSet": [
            {"Key": "team", "Value": "ops"}, {"Key": "cost centre", "Value": "42 é"}]})
        src.put_bucket_policy(Bucket="old-name", Policy=json.dumps(_policy("old-name")))
        src.put_bucket_encryption(Bucket="old-name", ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "app-key"},
             "BucketKeyEnabled": True}]})
        block = {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True,
                 "RestrictPublicBuckets": False}
        src.put_public_access_block(Bucket="old-name", PublicAccessBlockConfiguration=block)
        src.put_bucket_ownership_controls(Bucket="old-name", OwnershipControls={
            "Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
        report = _enable(c, source, "old-name", "--target", "new-name")
        assert {"tags", "policy", "encryption", "public_access_block", "ownership"} <= set(report["carried"]), report
        assert gw.get_public_access_block(Bucket="new-name")["PublicAccessBlockConfiguration"] == block
        assert gw.get_bucket_ownership_controls(Bucket="new-name")["OwnershipControls"]["Rules"] == [
            {"ObjectOwnership": "BucketOwnerPreferred"}]

        tags = gw.get_bucket_tagging(Bucket="new-name")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"team": "ops", "cost centre": "42 é"}
        carried = json.loads(gw.get_bucket_policy(Bucket="new-name")["Policy"])
        assert carried["Statement"] == [{**_policy("old-name")["Statement"][0],
                                         "Resource": "arn:aws:s3:::new-name/public/*"}]
        assert [line for line in report["not_carried"] if "Partner" in line and ACCOUNT in line], report
        rule = gw.get_bucket_encryption(Bucket="new-name")["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "app-key"}
        assert rule["BucketKeyEnabled"] is True

        # what a user checks: the carried policy opens public/ to anyone and nothing else,
        # and Pocket seals a PUT that names no encryption with the carried default
        body = random.Random(52).randbytes(3000)
        gw.put_object(Bucket="new-name", Key="public/page", Body=body)
        gw.put_object(Bucket="new-name", Key="private/page", Body=body[::-1])
        anonymous = boto3.client("s3", endpoint_url=c.endpoint, region_name="us-east-1",
                                 config=BotoConfig(signature_version=UNSIGNED, retries={"max_attempts": 1}))
        assert anonymous.get_object(Bucket="new-name", Key="public/page")["Body"].read() == body
        with pytest.raises(ClientError) as e:
            anonymous.get_object(Bucket="new-name", Key="private/page")
        assert e.value.response["Error"]["Code"] == "AccessDenied"
        with index_of(c) as index:    # HEAD answers from the source until cutover: ask Pocket's index
            sealed = index.get_object("new-name", "private/page")["sse"]
        assert sealed["mode"] == "aws:kms" and sealed["kid"] == "app-key", sealed


def test_enable_reports_an_unknown_kms_key_and_a_not_principal_policy(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True,
                         sections={"encryption": ENCRYPTION}) as (source, c):
        src, gw = source.client(), c.client()
        src.create_bucket(Bucket="guarded")
        unknown = "arn:aws:kms:us-east-1:123456789012:key/not-in-pocket"
        src.put_bucket_encryption(Bucket="guarded", ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": unknown}}]})
        src.put_bucket_policy(Bucket="guarded", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Sid": "OnlyPartner", "Effect": "Deny", "NotPrincipal": {"AWS": ACCOUNT}, "Action": "s3:*",
             "Resource": "arn:aws:s3:::guarded/*"}]}))
        report = _enable(c, source, "guarded")
        assert "encryption" not in report["carried"] and "policy" not in report["carried"], report
        assert [line for line in report["not_carried"] if unknown in line and "encryption" in line], report
        assert [line for line in report["not_carried"] if "NotPrincipal" in line], report
        for call, code in ((gw.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError"),
                           (gw.get_bucket_policy, "NoSuchBucketPolicy")):
            with pytest.raises(ClientError) as e:
                call(Bucket="guarded")
            assert e.value.response["Error"]["Code"] == code
