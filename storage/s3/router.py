"""The router table: (method, level, sub-resource) -> handler, in one place (Garage's router.rs).

`level` is "service" (no bucket), "bucket" or "object". A sub-resource is a query
parameter that selects a different operation on the same path (`?location`,
`?list-type=2`); requests naming one we do not implement get `NotImplemented`.
"""
from __future__ import annotations

from . import (acl, attributes, bucket, bucket_encryption, bucket_logging, bucket_policy, bucket_tagging, cors, errors,
               lifecycle, listing, multi_delete, multi_upload, obj, object_lock, post_object, public_access, tagging,
               versioning, versions)

ROUTES = {
    ("GET", "service", None): bucket.list_buckets,
    ("PUT", "bucket", None): bucket.create_bucket,
    ("HEAD", "bucket", None): bucket.head_bucket,
    ("DELETE", "bucket", None): bucket.delete_bucket,
    ("GET", "bucket", "location"): bucket.get_location,
    ("GET", "bucket", "versioning"): versioning.get_bucket_versioning,
    ("PUT", "bucket", "versioning"): versioning.put_bucket_versioning,
    ("GET", "bucket", "list-type"): listing.list_objects_v2,
    ("GET", "bucket", None): listing.list_objects_v1,
    ("POST", "bucket", None): post_object.post_object,
    ("PUT", "object", None): obj.put_object,
    ("GET", "object", None): obj.get_object,
    ("HEAD", "object", None): obj.head_object,
    ("DELETE", "object", None): obj.delete_object,
    ("GET", "object", "partNumber"): obj.get_object,
    ("HEAD", "object", "partNumber"): obj.head_object,
    # multipart: UploadPart carries both partNumber and uploadId, in either order
    ("GET", "bucket", "uploads"): multi_upload.list_uploads,
    ("POST", "object", "uploads"): multi_upload.create_upload,
    ("PUT", "object", "partNumber"): multi_upload.upload_part,
    ("PUT", "object", "uploadId"): multi_upload.upload_part,
    ("POST", "object", "uploadId"): multi_upload.complete_upload,
    ("DELETE", "object", "uploadId"): multi_upload.abort_upload,
    ("GET", "object", "uploadId"): multi_upload.list_parts,
    ("POST", "bucket", "delete"): multi_delete.delete_objects,
    ("GET", "object", "tagging"): tagging.get_object_tagging,
    ("PUT", "object", "tagging"): tagging.put_object_tagging,
    ("DELETE", "object", "tagging"): tagging.delete_object_tagging,
    ("PUT", "bucket", "tagging"): bucket_tagging.put_bucket_tagging,
    ("GET", "bucket", "tagging"): bucket_tagging.get_bucket_tagging,
    ("DELETE", "bucket", "tagging"): bucket_tagging.delete_bucket_tagging,
    ("PUT", "bucket", "cors"): cors.put_bucket_cors,
    ("GET", "bucket", "cors"): cors.get_bucket_cors,
    ("DELETE", "bucket", "cors"): cors.delete_bucket_cors,
    ("PUT", "bucket", "lifecycle"): lifecycle.put_bucket_lifecycle,
    ("GET", "bucket", "lifecycle"): lifecycle.get_bucket_lifecycle,
    ("DELETE", "bucket", "lifecycle"): lifecycle.delete_bucket_lifecycle,
    ("PUT", "bucket", "encryption"): bucket_encryption.put_bucket_encryption,
    ("GET", "bucket", "encryption"): bucket_encryption.get_bucket_encryption,
    ("DELETE", "bucket", "encryption"): bucket_encryption.delete_bucket_encryption,
    ("GET", "bucket", "logging"): bucket_logging.get_bucket_logging,
    ("PUT", "bucket", "logging"): bucket_logging.put_bucket_logging,
    ("GET", "bucket", "acl"): acl.get_bucket_acl,
    ("PUT", "bucket", "acl"): acl.put_bucket_acl,
    ("GET", "object", "acl"): acl.get_object_acl,
    ("PUT", "object", "acl"): acl.put_object_acl,
    ("GET", "object", "attributes"): attributes.get_object_attributes,
    ("GET", "bucket", "versions"): versions.list_object_versions,
    ("PUT", "bucket", "policy"): bucket_policy.put_bucket_policy,
    ("GET", "bucket", "policy"): bucket_policy.get_bucket_policy,
    ("DELETE", "bucket", "policy"): bucket_policy.delete_bucket_policy,
    ("GET", "bucket", "policyStatus"): bucket_policy.get_bucket_policy_status,
    ("PUT", "bucket", "publicAccessBlock"): public_access.put_public_access_block,
    ("GET", "bucket", "publicAccessBlock"): public_access.get_public_access_block,
    ("DELETE", "bucket", "publicAccessBlock"): public_access.delete_public_access_block,
    ("PUT", "bucket", "ownershipControls"): public_access.put_ownership_controls,
    ("GET", "bucket", "ownershipControls"): public_access.get_ownership_controls,
    ("DELETE", "bucket", "ownershipControls"): public_access.delete_ownership_controls,
    ("PUT", "bucket", "object-lock"): object_lock.put_object_lock_configuration,
    ("GET", "bucket", "object-lock"): object_lock.get_object_lock_configuration,
    ("PUT", "object", "retention"): object_lock.put_object_retention,
    ("GET", "object", "retention"): object_lock.get_object_retention,
    ("PUT", "object", "legal-hold"): object_lock.put_object_legal_hold,
    ("GET", "object", "legal-hold"): object_lock.get_object_legal_hold,
}

# Operations that stream a request body onto the disks: each holds an upload slot
# (limits.UploadSlots) while it runs. CopyObject and UploadPartCopy ride on the same
# handlers: they hold disks and memory just the same.
UPLOADS = {obj.put_object, multi_upload.upload_part, post_object.post_object}

# Query parameters that change the operation. Anything here without a route is 501.
SUBRESOURCES = {
    "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption", "intelligent-tiering",
    "inventory", "legal-hold", "lifecycle", "list-type", "location", "logging", "metrics", "notification",
    "object-lock", "ownershipControls", "partNumber", "policy", "policyStatus", "publicAccessBlock",
    "replication", "requestPayment", "restore", "retention", "select", "tagging", "torrent", "uploadId",
    "uploads", "versioning", "versions", "website",
}
# ?versionId= selects a version, not an operation: only these handlers honour it (the
# others would act on the current version, so they refuse a version id).
VERSIONED = {obj.get_object, obj.head_object, obj.delete_object, tagging.get_object_tagging,
             tagging.put_object_tagging, tagging.delete_object_tagging, attributes.get_object_attributes,
             acl.get_object_acl, acl.put_object_acl, object_lock.put_object_retention,
             object_lock.get_object_retention, object_lock.put_object_legal_hold, object_lock.get_object_legal_hold}


def resolve(method: str, bucket: str, key: str, query) -> callable:
    level = "object" if key else "bucket" if bucket else "service"
    subs = [q for q in query if q in SUBRESOURCES]
    sub = subs[0] if subs else None
    handler = ROUTES.get((method, level, sub))
    if handler is not None:
        if query.get("versionId", "null") != "null" and handler not in VERSIONED:
            raise errors.NotImplementedError_(f"{method} of a given ?versionId is not implemented for this "
                                              "resource by Pocket")
        return handler
    if sub is not None or (method, level) in {(m, lv) for m, lv, _ in ROUTES}:
        raise errors.NotImplementedError_(
            f"{method} with ?{sub} is not implemented by Pocket yet" if sub else
            f"{method} is not implemented for this resource")
    raise errors.MethodNotAllowed(f"{method} is not allowed against this resource")
