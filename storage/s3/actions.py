"""Which IAM action each S3 operation is, and which ACL permission grants it.

Policies name actions (`s3:GetObject`), handlers are named after operations
(`get_object`): this table joins them. An operation missing here is one only the
bucket's owner may perform, and never anonymously (app.py).
"""
from __future__ import annotations

ACTIONS = {
    "list_buckets": "s3:ListAllMyBuckets", "create_bucket": "s3:CreateBucket",
    "head_bucket": "s3:ListBucket", "delete_bucket": "s3:DeleteBucket", "get_location": "s3:GetBucketLocation",
    "get_bucket_versioning": "s3:GetBucketVersioning", "put_bucket_versioning": "s3:PutBucketVersioning",
    "list_objects_v1": "s3:ListBucket", "list_objects_v2": "s3:ListBucket",
    "list_object_versions": "s3:ListBucketVersions",
    "put_object": "s3:PutObject", "post_object": "s3:PutObject", "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",
    "delete_object": "s3:DeleteObject", "delete_objects": "s3:DeleteObject",
    "list_uploads": "s3:ListBucketMultipartUploads", "create_upload": "s3:PutObject",
    "upload_part": "s3:PutObject", "complete_upload": "s3:PutObject", "abort_upload": "s3:AbortMultipartUpload",
    "list_parts": "s3:ListMultipartUploadParts",
    "get_object_tagging": "s3:GetObjectTagging", "put_object_tagging": "s3:PutObjectTagging",
    "delete_object_tagging": "s3:DeleteObjectTagging",
    "get_bucket_tagging": "s3:GetBucketTagging", "put_bucket_tagging": "s3:PutBucketTagging",
    "delete_bucket_tagging": "s3:PutBucketTagging",
    "put_bucket_cors": "s3:PutBucketCORS", "get_bucket_cors": "s3:GetBucketCORS",
    "delete_bucket_cors": "s3:PutBucketCORS",
    "put_bucket_lifecycle": "s3:PutLifecycleConfiguration", "get_bucket_lifecycle": "s3:GetLifecycleConfiguration",
    "delete_bucket_lifecycle": "s3:PutLifecycleConfiguration",
    "get_bucket_acl": "s3:GetBucketAcl", "put_bucket_acl": "s3:PutBucketAcl",
    "get_object_acl": "s3:GetObjectAcl", "put_object_acl": "s3:PutObjectAcl",
    "get_object_attributes": "s3:GetObjectAttributes",
    "get_bucket_policy": "s3:GetBucketPolicy", "put_bucket_policy": "s3:PutBucketPolicy",
    "delete_bucket_policy": "s3:DeleteBucketPolicy", "get_bucket_policy_status": "s3:GetBucketPolicyStatus",
    "get_public_access_block": "s3:GetBucketPublicAccessBlock",
    "put_public_access_block": "s3:PutBucketPublicAccessBlock",
    "delete_public_access_block": "s3:PutBucketPublicAccessBlock",
    "get_ownership_controls": "s3:GetBucketOwnershipControls",
    "put_ownership_controls": "s3:PutBucketOwnershipControls",
    "delete_ownership_controls": "s3:PutBucketOwnershipControls",
    "put_object_lock_configuration": "s3:PutBucketObjectLockConfiguration",
    "get_object_lock_configuration": "s3:GetBucketObjectLockConfiguration",
    "put_object_retention": "s3:PutObjectRetention", "get_object_retention": "s3:GetObjectRetention",
    "put_object_legal_hold": "s3:PutObjectLegalHold", "get_object_legal_hold": "s3:GetObjectLegalHold",
    "put_bucket_encryption": "s3:PutEncryptionConfiguration", "get_bucket_encryption": "s3:GetEncryptionConfiguration",
    "delete_bucket_encryption": "s3:PutEncryptionConfiguration",
    "get_bucket_logging": "s3:GetBucketLogging",   # PutBucketLogging: the bucket's owner only, as on S3
}
# Operations never open to anonymous callers whatever a policy says: they name no bucket
# whose policy could allow them.
NEVER_ANONYMOUS = {"list_buckets", "create_bucket"}
# Addressing a version asks for the action's "Version" variant, as on S3.
_VERSIONED = {"s3:GetObject": "s3:GetObjectVersion", "s3:DeleteObject": "s3:DeleteObjectVersion",
              "s3:GetObjectTagging": "s3:GetObjectVersionTagging", "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
              "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging", "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
              "s3:PutObjectAcl": "s3:PutObjectVersionAcl", "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes"}
# The ACL permission that grants an action, and whether the bucket's or the object's ACL is asked.
_ACL = {
    "s3:ListBucket": ("bucket", "READ"), "s3:ListBucketVersions": ("bucket", "READ"),
    "s3:ListBucketMultipartUploads": ("bucket", "READ"),
    "s3:PutObject": ("bucket", "WRITE"), "s3:DeleteObject": ("bucket", "WRITE"),
    "s3:DeleteObjectVersion": ("bucket", "WRITE"), "s3:AbortMultipartUpload": ("bucket", "WRITE"),
    "s3:ListMultipartUploadParts": ("bucket", "WRITE"),
    "s3:GetBucketAcl": ("bucket", "READ_ACP"), "s3:PutBucketAcl": ("bucket", "WRITE_ACP"),
    "s3:GetObject": ("object", "READ"), "s3:GetObjectVersion": ("object", "READ"),
    "s3:GetObjectAcl": ("object", "READ_ACP"), "s3:GetObjectVersionAcl": ("object", "READ_ACP"),
    "s3:PutObjectAcl": ("object", "WRITE_ACP"), "s3:PutObjectVersionAcl": ("object", "WRITE_ACP"),
}
# What a bucket's owner may always do, even when its own policy denies it: otherwise one
# bad policy would lock the owner out for good (on AWS the account's root user can).
OWNER_KEEPS = {"s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"}


def action_of(operation: str, versioned: bool = False) -> str | None:
    action = ACTIONS.get(operation)
    return _VERSIONED.get(action, action) if versioned else action


def acl_permission(action: str) -> tuple[str | None, str | None]:
    return _ACL.get(action, (None, None))
