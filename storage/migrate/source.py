"""A botocore S3 client for a migration's source bucket.

The source is any S3 endpoint: AWS itself when no endpoint is given, or a local S3 server
(moto, SeaweedFS, another Pocket) in tests. Credentials come from the standard AWS chain of
the process that talks to the source (environment, `--source-profile`, instance role), or
from the 0600 credentials file when the operator gave keys explicitly (credentials.py).
Secrets are never logged: `describe()` is what log lines use.
"""
from __future__ import annotations

import datetime
import os

from .credentials import load_keys
from .state import Source


def client(source: Source, keys_file: str | None = None, *, max_connections: int = 32,
           connect_timeout: float = 10, read_timeout: float = 60):
    """A thread-safe S3 client for the source (one per process is enough).

    botocore is imported here, not with the module: every gateway imports the migration
    routing, and only one with a migrating bucket needs it (a seventh of a second of CPU
    at each start). The client is botocore's own, the one boto3 wraps: boto3 adds only
    resources and the transfer manager, which Pocket does not use, and importing them
    (s3transfer) cost ~35 ms of every `pocket migrate` command's start-up."""
    import botocore.session
    from botocore.config import Config as BotoConfig
    keys = load_keys(keys_file, source.bucket) if keys_file else None
    session = botocore.session.get_session()
    if source.profile:
        session.set_config_variable("profile", source.profile)
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    cfg = BotoConfig(
        region_name=source.region or session.get_config_variable("region") or "us-east-1",
        # SigV4 for presigned URLs too (presigned_get.py), as for every other request
        signature_version="s3v4",
        s3={"addressing_style": source.addressing if source.addressing in ("path", "virtual") else "auto"},
        retries={"mode": "standard", "max_attempts": max_attempts()},
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
    return session.create_client("s3", endpoint_url=source.endpoint or None, config=cfg, **kwargs)


def parse_timestamp(value):
    """botocore's timestamp parser, without dateutil where it can: a listing's every
    LastModified went through dateutil.parser, a tenth of a small-object copy's CPU (py-spy,
    2,000 x 4 KiB). S3's ISO 8601 times ("2026-12-03T08:00:00.000Z") parse with
    `fromisoformat`; anything else (HTTP dates, epoch numbers, times without a zone) goes
    to botocore's own parser, so every value comes out as botocore would make it."""
    if isinstance(value, str) and (value[-1:] in ("Z", "z") or value[-6:-5] in ("+", "-")):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    from botocore.utils import parse_timestamp as slow
    return slow(value)


def max_attempts() -> int:
    """Five tries of a call that fails (a source busy or briefly away), unless the operator
    set AWS_MAX_ATTEMPTS: boto3 reads that itself, but not when the client's config names a
    number, so it is honoured here. Tests with a source cut off set it low, or each refused
    call spends seconds backing off before it is reported."""
    return int(os.environ.get("AWS_MAX_ATTEMPTS") or 5)


def describe(source: Source) -> str:
    """What log lines and reports say about a source (never a secret)."""
    where = source.endpoint or "AWS"
    who = f", profile {source.profile}" if source.profile else ""
    return f"s3://{source.bucket} at {where}{who}"
