"""A boto3 client for a migration's source bucket.

The source is any S3 endpoint: AWS itself when no endpoint is given, or a local S3 server
(moto, SeaweedFS, another Pocket) in tests. Credentials come from the standard AWS chain of
the process that talks to the source (environment, `--source-profile`, instance role), or
from the 0600 credentials file when the operator gave keys explicitly (credentials.py).
Secrets are never logged: `describe()` is what log lines use.
"""
from __future__ import annotations

from .credentials import load_keys
from .state import Source


def client(source: Source, keys_file: str | None = None, *, max_connections: int = 32,
           connect_timeout: float = 10, read_timeout: float = 60):
    """A thread-safe boto3 S3 client for the source (one per process is enough).

    boto3 is imported here, not with the module: every gateway imports the migration
    routing, and only one with a migrating bucket needs boto3 (a fifth of a second of
    CPU at each start)."""
    import boto3
    from botocore.config import Config as BotoConfig
    keys = load_keys(keys_file, source.bucket) if keys_file else None
    session = boto3.session.Session(profile_name=source.profile) if source.profile else boto3.session.Session()
    cfg = BotoConfig(
        region_name=source.region or session.region_name or "us-east-1",
        # SigV4 for presigned URLs too (small_get.py), as for every other request
        signature_version="s3v4",
        s3={"addressing_style": source.addressing if source.addressing in ("path", "virtual") else "auto"},
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=max_connections,
        connect_timeout=connect_timeout, read_timeout=read_timeout,
        # Ask for checksums only when an operation needs them, so that plain servers
        # (moto, SeaweedFS, older S3-compatible stores) see the requests AWS would.
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )
    kwargs = {}
    if keys:
        kwargs = {"aws_access_key_id": keys["access_key"], "aws_secret_access_key": keys["secret_key"]}
        if keys.get("session_token"):
            kwargs["aws_session_token"] = keys["session_token"]
    return session.client("s3", endpoint_url=source.endpoint or None, config=cfg, **kwargs)


def describe(source: Source) -> str:
    """What log lines and reports say about a source (never a secret)."""
    where = source.endpoint or "AWS"
    who = f", profile {source.profile}" if source.profile else ""
    return f"s3://{source.bucket} at {where}{who}"
