"""Bucket versioning: Put/GetBucketVersioning, and how requests address one version.

A bucket starts never-versioned (GetBucketVersioning answers an empty configuration);
once Enabled it can be Suspended but never unversioned again, as in S3. The state is a
field of the bucket record, changed through BucketService.configure, so it is on the
disks (a `bucket-config` record) before the index sees it and survives an index rebuild.
What versioning means for writes and deletes is objects/commits.py; this module is the
HTTP side: the versionId query parameter, the x-amz-version-id and x-amz-delete-marker
headers, and the errors S3 gives for versions that are not there.
"""
from __future__ import annotations

from aiohttp import web

from ..index.versions import NULL, is_marker, s3_version_id, valid_version_id
from ..objects.contracts import VersionRecord
from . import errors, xml
from .access import owned_bucket, readable_object
from .body import read_small
from .names import check_key
from .request import S3Request

ENABLED, SUSPENDED = "Enabled", "Suspended"
_MAX_BODY = 64 << 10


async def get_bucket_versioning(req: S3Request) -> web.Response:
    record = owned_bucket(req)
    state = record.get("versioning")
    fields = [("Status", state)] if state else []
    return web.Response(body=xml.document(xml.element("VersioningConfiguration", fields)),
                        content_type="application/xml")


async def put_bucket_versioning(req: S3Request) -> web.Response:
    record = owned_bucket(req)
    root = xml.parse(await read_small(req, _MAX_BODY))
    if root is None or root.tag != "VersioningConfiguration":
        raise errors.MalformedXML()
    status = (root.findtext("Status") or "").strip()
    mfa = (root.findtext("MfaDelete") or root.findtext("MFADelete") or "").strip()
    if mfa == ENABLED:
        raise errors.NotImplementedError_("MFA Delete is not implemented by Pocket; leave MfaDelete out or "
                                          "set it to Disabled.")
    if status not in (ENABLED, SUSPENDED) or mfa not in ("", "Disabled"):
        raise errors.MalformedXML()
    if status != record.get("versioning"):  # a never-versioned bucket may go straight to Suspended, as in S3
        await req.gateway.buckets.configure(req.bucket, {"versioning": status})
    return web.Response()


def requested_version(req: S3Request) -> str | None:
    """The ?versionId= of the request: None if absent; InvalidArgument if malformed."""
    version_id = req.query.get("versionId")
    if version_id is None:
        return None
    if not valid_version_id(version_id):
        raise errors.InvalidArgument("Invalid version id specified", ArgumentName="versionId",
                                     ArgumentValue=version_id)
    return version_id


def new_version_fields(bucket: dict) -> dict:
    """Record fields of a new write to `bucket`: with versioning Enabled it is a real version."""
    return {"versioned": True} if bucket.get("versioning") == ENABLED else {}


def version_headers(bucket: dict, record: VersionRecord) -> dict[str, str]:
    """x-amz-version-id for a record of a versioned bucket (never-versioned ones get none)."""
    if not bucket.get("versioning") and not record.get("versioned"):
        return {}
    headers = {"x-amz-version-id": s3_version_id(record)}
    if is_marker(record):
        headers["x-amz-delete-marker"] = "true"
    return headers


async def addressed(req: S3Request, bucket: dict, bucket_name: str, key: str, version_id: str | None) -> VersionRecord:
    """The record a request names: the current version, or `version_id`.

    Errors as S3 gives them: a key whose latest is a delete marker is NoSuchKey with
    x-amz-delete-marker; a delete marker named by id is MethodNotAllowed; an unknown
    version id is NoSuchVersion."""
    resource = f"/{bucket_name}/{key}"
    if version_id is None:
        record = await req.gateway.objects.head(bucket_name, key)
        if record is not None:
            return record
        e = errors.NoSuchKey(resource=resource, Key=key)
        if bucket.get("versioning"):
            latest = await req.gateway.objects.latest_version(bucket_name, key)
            if latest is not None:  # no current record but a history: the latest is a delete marker
                e.headers.update(version_headers(bucket, latest))
        raise e
    record = await req.gateway.objects.get_version(bucket_name, key, version_id)
    if record is None:
        if version_id == NULL and not bucket.get("versioning"):
            raise errors.NoSuchKey(resource=resource, Key=key)
        raise errors.NoSuchVersion(resource=resource, Key=key, VersionId=version_id)
    if is_marker(record):
        e = errors.MethodNotAllowed(resource=resource, Method=req.http.method, ResourceType="DeleteMarker")
        e.headers.update(version_headers(bucket, record))
        e.headers["Last-Modified"] = xml.http_date(record["created"])
        raise e
    return record


async def readable_version(req: S3Request, bucket_name: str | None = None, key: str | None = None,
                     version_id: str | None = None) -> tuple[dict, VersionRecord]:
    """(bucket record, addressed version) if the caller may read it; see access.readable_object."""
    bucket_name, key = bucket_name or req.bucket, key or req.key
    seen: dict = {}

    async def find(bucket: dict) -> VersionRecord:
        seen["bucket"] = bucket
        return await addressed(req, bucket, bucket_name, key, version_id)
    record = await readable_object(req, bucket_name, key, find)
    return seen["bucket"], record


async def owned_version(req: S3Request) -> tuple[dict, VersionRecord]:
    """(bucket record, addressed version) if the caller may run this operation on it (tagging, ACLs)."""
    check_key(req.key)
    return await readable_version(req, version_id=requested_version(req))
