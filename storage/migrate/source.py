"""The S3 client of a migration's source bucket.

The source is any S3 endpoint: AWS itself when no endpoint is given, or a local S3 server
(moto, SeaweedFS, another Pocket) in tests. Credentials come from the standard AWS chain of
the process that talks to the source (environment, `--source-profile`, instance role), or
from the 0600 credentials file when the operator gave keys explicitly (credentials.py).
Secrets are never logged: `describe()` is what log lines use.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from .credentials import load_keys
from .source_common import max_attempts, parse_timestamp
from .state import Source


def client(source: Source, keys_file: str | None = None, **options) -> "SourceClient":
    """The source's client (one per process is enough; thread-safe). `options` are
    `_botocore`'s: max_connections, connect_timeout, read_timeout."""
    return SourceClient(source, keys_file, options)


class SourceClient:
    """botocore's S3 client for the source, made at the first call that needs it.

    Listings (list_http.py) and presigned GETs and HEADs (presign.py) go without it when
    `direct` knows the endpoint, region and keys as botocore would resolve them: importing
    botocore and building its client was 0.18 s of CPU, 63 % of a 1,000-object `verify
    --quick` (py-spy), and `copy` needs it only for what those paths leave to it (tags, a
    URL the source refused). Every other attribute is the botocore client's."""

    def __init__(self, source: Source, keys_file: str | None, options: dict):
        self.source, self.keys_file, self._options = source, keys_file, options
        self._real = None
        self._lock = threading.Lock()
        self.direct = direct_settings(source, keys_file)
        self._lister = None

    @property
    def botocore(self):
        with self._lock:
            if self._real is None:
                self._real = _botocore(self.source, self.keys_file, **self._options)
        return self._real

    @property
    def lister(self):
        """This client's list_http.Lister (one presigner and connection set for all listings)."""
        with self._lock:
            if self._lister is None:
                from .list_http import Lister
                self._lister = Lister(self)
        return self._lister

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.botocore, name)


@dataclass(frozen=True)
class Direct:
    """An explicit endpoint's settings as botocore would resolve them (see direct_settings)."""
    origin: str          # scheme://host[:port]
    path: str            # the endpoint URL's own path, without its last "/"
    region: str
    access_key: str
    secret_key: str
    token: str | None
    ca_file: str | None  # https only: AWS_CA_BUNDLE, else certifi's (botocore's default)


def direct_settings(source: Source, keys_file: str | None) -> Direct | None:
    """The endpoint, region and keys botocore would use, when they can be known without it.

    That is: an explicit endpoint addressed path-style (botocore's choice for any custom
    endpoint unless `virtual` is asked for), keys from the 0600 file or from the
    environment (the first provider of botocore's chain, which an explicit profile turns
    off), and no AWS config file or profile that could name a region, a CA bundle or
    anything else. AWS itself, virtual-host addressing, profiles and instance roles are
    botocore's to resolve (None)."""
    if not source.endpoint or source.addressing == "virtual" or source.profile or os.environ.get("AWS_PROFILE"):
        return None
    if os.path.exists(os.path.expanduser(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config")):
        return None
    parts = urlsplit(source.endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return None
    keys = load_keys(keys_file, source) if keys_file else None
    if keys:
        access, secret, token = keys["access_key"], keys["secret_key"], keys.get("session_token")
    else:
        if os.environ.get("AWS_CREDENTIAL_EXPIRATION"):     # refreshable: botocore's business
            return None
        access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        token = os.environ.get("AWS_SESSION_TOKEN") or os.environ.get("AWS_SECURITY_TOKEN")
        if not (access and secret):
            return None
    ca_file = None
    if parts.scheme == "https":
        ca_file = os.environ.get("AWS_CA_BUNDLE")
        if not ca_file:
            import certifi
            ca_file = certifi.where()
    return Direct(f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/"),
                  source.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                  access, secret, token or None, ca_file)




def _botocore(source: Source, keys_file: str | None = None, *, max_connections: int = 32,
              connect_timeout: float = 10, read_timeout: float = 60):
    """A thread-safe botocore S3 client for the source.

    botocore is imported here, not with the module: every gateway imports the migration
    routing, and only one with a migrating bucket needs it (a seventh of a second of CPU
    at each start). The client is botocore's own, the one boto3 wraps: boto3 adds only
    resources and the transfer manager, which Pocket does not use, and importing them
    (s3transfer) cost ~35 ms of every `pocket migrate` command's start-up."""
    import botocore.session
    from botocore.config import Config as BotoConfig
    keys = load_keys(keys_file, source) if keys_file else None
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






def describe(source: Source) -> str:
    """What log lines and reports say about a source (never a secret)."""
    where = source.endpoint or "AWS"
    who = f", profile {source.profile}" if source.profile else ""
    return f"s3://{source.bucket} at {where}{who}"
