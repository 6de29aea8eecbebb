"""What the migration's two ways to the source share: its listings without botocore
(list_http.py) and botocore's client (source.py). Kept below both, so neither imports the
other to reach them."""
from __future__ import annotations

import datetime
import os
import random
import ssl
import time


def ssl_context(client) -> ssl.SSLContext:
    """The certificates botocore trusts for the source (AWS_CA_BUNDLE, the profile's
    ca_bundle, certifi's), or none checked when its client was made with verify=False."""
    direct = getattr(client, "direct", None)
    if direct is not None:
        return ssl.create_default_context(cafile=direct.ca_file)
    from botocore.httpsession import get_cert_path
    verify = getattr(client._endpoint.http_session, "_verify", True)
    if verify is False:
        unchecked = ssl.create_default_context()
        unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
        return unchecked
    return ssl.create_default_context(cafile=get_cert_path(verify))


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


def backoff(attempt: int) -> None:
    """A random wait of up to 1, 2, 4... seconds, at most 20 (as botocore's standard mode)."""
    time.sleep(random.random() * min(20.0, 2.0 ** (attempt - 1)))
