"""`pocket migrate enable`: make the Pocket bucket like the source's and start dual writes.

The bucket is created when missing, with the source's versioning state and the
configuration Pocket supports (CORS, lifecycle, tags, policy, default encryption, public
access block, object ownership), read
from the source as the exact document it serves and parsed by the same code that parses a
client's Put request (so what Pocket accepts here it would accept from a client). What
cannot be carried is reported, not silently dropped: carry.py says what that is.
"""
from __future__ import annotations

import time

from botocore.exceptions import BotoCoreError, ClientError

from ..s3 import lifecycle_xml as lifecycle_config
from ..s3 import cors as cors_config
from ..s3 import public_access
from ..s3.errors import S3Error
from . import carry, rebuild_guard, state
from . import source as source_client
from .credentials import store_keys

_ABSENT = ("NoSuchCORSConfiguration", "NoSuchLifecycleConfiguration", "NoSuchTagSet", "NoSuchBucketPolicy",
           "ServerSideEncryptionConfigurationNotFoundError", "NoSuchWebsiteConfiguration", "NotImplemented",
           "NoSuchPublicAccessBlockConfiguration", "OwnershipControlsNotFoundError",
           "404")


def remembered(index, source_bucket: str, given: dict, keys_file: str) -> state.Migration:
    """The bucket's migration record with the source options of this command line applied
    (omitted ones are remembered from `plan` or an earlier `enable`); not saved yet."""
    target = given.get("target") or source_bucket
    m = state.load(index, target) or state.Migration(target, state.Source(source_bucket))
    s = m.source
    for option, field in (("source_endpoint", "endpoint"), ("source_region", "region"),
                          ("source_profile", "profile"), ("source_addressing", "addressing")):
        if given.get(option) is not None:
            setattr(s, field, given[option])
    if given.get("source_access_key") and given.get("source_secret_key"):
        store_keys(keys_file, s, given["source_access_key"], given["source_secret_key"])
    return m


def _raw_xml(client, call: str, bucket: str) -> bytes | None:
    """The source's configuration document as served (None when the bucket has none)."""
    captured = {}

    def keep(http_response, **_):
        captured["body"] = http_response.content
    event = f"after-call.s3.{call}"
    client.meta.events.register(event, keep)
    try:
        getattr(client, _SNAKE[call])(Bucket=bucket)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in _ABSENT or \
                str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")) == "404":
            return None
        raise
    finally:
        client.meta.events.unregister(event, keep)
    return captured.get("body")


_SNAKE = {"GetBucketCors": "get_bucket_cors", "GetBucketLifecycleConfiguration": "get_bucket_lifecycle_configuration",
          "GetBucketTagging": "get_bucket_tagging", "GetBucketPolicy": "get_bucket_policy",
          "GetBucketEncryption": "get_bucket_encryption", "GetBucketWebsite": "get_bucket_website",
          "GetPublicAccessBlock": "get_public_access_block", "GetBucketOwnershipControls": "get_bucket_ownership_controls"}
_NAMES = {"GetBucketCors": "cors", "GetBucketLifecycleConfiguration": "lifecycle", "GetBucketTagging": "tags",
          "GetBucketPolicy": "policy", "GetBucketEncryption": "encryption",
          "GetPublicAccessBlock": "public_access_block", "GetBucketOwnershipControls": "ownership"}
CARRIED_FIELDS = tuple(_NAMES.values())
_NOT_SUPPORTED = {"GetBucketWebsite": "website configuration"}


def _converters(source_bucket: str, target: str, keys) -> dict:
    """call -> convert(body, notes): the bucket record's value (None: nothing carried)."""
    return {"GetBucketCors": lambda body, _: cors_config.parse(body),
            "GetBucketLifecycleConfiguration": lambda body, _: lifecycle_config.parse(body),
            "GetBucketTagging": carry.tags,
            "GetBucketPolicy": lambda body, notes: carry.policy(body, notes, source_bucket, target),
            "GetBucketEncryption": lambda body, notes: carry.encryption(body, notes, keys),
            "GetPublicAccessBlock": lambda body, _: public_access.parse_block(body),
            "GetBucketOwnershipControls": lambda body, _: public_access.parse_ownership(body)}


def source_config(client, bucket: str, target: str, keys) -> tuple[dict, list[str], list[str]]:
    """(bucket record fields Pocket takes, what was carried, what could not be) of the source bucket."""
    fields, carried, missing = {}, [], []
    versioning = client.get_bucket_versioning(Bucket=bucket).get("Status")
    if versioning:
        fields["versioning"] = versioning
        carried.append(f"versioning {versioning}")
    for call, convert in _converters(bucket, target, keys).items():
        name = _NAMES[call]
        try:
            body = _raw_xml(client, call, bucket)
        except (ClientError, BotoCoreError) as e:
            missing.append(f"{name}: the source did not answer {call} ({e})")
            continue
        if body is None:
            continue
        try:
            value = convert(body, missing)
        except S3Error as e:
            missing.append(f"{name}: Pocket does not accept the source's {name} ({e.text})")
            continue
        except ValueError as e:      # a policy Pocket cannot read (MalformedPolicy, bad JSON)
            missing.append(f"{name}: Pocket does not accept the source's {name} ({e})")
            continue
        if value is not None:
            fields[name] = value
            carried.append(name)
    for call, what in _NOT_SUPPORTED.items():
        try:
            if _raw_xml(client, call, bucket) is not None:
                missing.append(f"{what}: not supported by Pocket yet; apply the equivalent by hand")
        except (ClientError, BotoCoreError):
            pass
    acl = client.get_bucket_acl(Bucket=bucket)
    grants = [g for g in acl.get("Grants", []) if g.get("Grantee", {}).get("ID") != acl.get("Owner", {}).get("ID")]
    if grants:
        missing.append(f"ACL: {len(grants)} grants beyond the owner's are not carried (they name the source's "
                       f"users and groups); set the bucket's ACL with PutBucketAcl")
    return fields, carried, missing


async def enable(index, buckets_service, source_bucket: str, given: dict, keys_file: str, owner: str) -> dict:
    """Create the Pocket bucket if missing (like the source's) and move the migration to dual-write."""
    m = remembered(index, source_bucket, given, keys_file)
    if m.state not in (state.PLANNED,):
        raise state.MigrationError(f"{m.bucket} is already {m.state} ({state.next_step(m.state)})")
    client = source_client.client(m.source, keys_file)
    try:
        fields, carried, missing = source_config(client, m.source.bucket, m.bucket, buckets_service.objects.keys)
    except (ClientError, BotoCoreError) as e:
        raise state.MigrationError(f"cannot read the source bucket {source_client.describe(m.source)}: {e}; check "
                                   f"--source-endpoint and the credentials") from e
    # created with what its first disk record keeps (index/rebuild.py); the carried settings and
    # the migration marker go in a bucket-config record, which a rebuild replays
    created = False
    existing = buckets_service.get(m.bucket)
    if existing is None:
        await buckets_service.create(m.bucket, {"owner": owner, "created": time.time(),
                                                **({"versioning": fields["versioning"]} if "versioning" in fields
                                                   else {})})
        created, existing = True, {}
    changes = {name: fields[name] for name in CARRIED_FIELDS if name in fields and not existing.get(name)}
    if fields.get("versioning") and existing.get("versioning") != fields["versioning"] and not created:
        changes["versioning"] = fields["versioning"]
    changes[rebuild_guard.FIELD] = rebuild_guard.marker(m)
    await buckets_service.configure(m.bucket, changes)
    state.save(index, m)
    m = state.transition(index, m.bucket, state.DUAL_WRITE, "enable")
    return {"bucket": m.bucket, "source": source_client.describe(m.source), "state": m.state,
            "created": created, "carried": carried, "not_carried": missing}
