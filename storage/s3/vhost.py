"""Where the bucket name is: in the Host header (virtual-host style) or the path.

`mybucket.localhost:9000/photos/cat.jpg` and `localhost:9000/mybucket/photos/cat.jpg`
name the same object. A Host is virtual-host style when it ends in `.<domain>` for one
of the configured domains (`gateway.domains`); everything else, including a bare
domain or an IP address, is path style. SigV4 signs the path as sent, so either form
verifies without translation.
"""
from __future__ import annotations

from urllib.parse import unquote

from .request import split_path


def bucket_from_host(host: str | None, domains) -> str | None:
    if not host:
        return None
    name = host.strip().lower()
    if name.startswith("["):  # IPv6 literal
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    name = name.rstrip(".")
    for domain in sorted(domains, key=len, reverse=True):
        if name.endswith("." + domain) and len(name) > len(domain) + 1:
            return name[: -len(domain) - 1]
    return None


def locate(host: str | None, raw_path: str, domains) -> tuple[str, str]:
    """(bucket, key) of a request, from its Host header and raw path."""
    bucket = bucket_from_host(host, domains)
    if bucket is None:
        return split_path(raw_path)
    path = raw_path.split("?", 1)[0]
    return bucket, unquote(path[1:] if path.startswith("/") else path, errors="surrogateescape")
