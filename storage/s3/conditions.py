"""Conditional requests: If-Match & co. on reads, writes and copy sources.

Reads (GET/HEAD) follow RFC 7232's order, which is also S3's documented precedence:
If-Match (412), else If-Unmodified-Since (412); then If-None-Match (304), else
If-Modified-Since (304). So If-Match true + If-Unmodified-Since false is a 200, and
If-None-Match false + If-Modified-Since true is a 304.

Writes support what S3 does: `If-None-Match: *` (only create) and `If-Match: "etag"`
(only replace that version). The check returned by `write_condition` runs twice: once
before the body is read (to fail fast) and once inside the index transaction that
installs the new version, so two racing conditional PUTs cannot both win.

Copy sources use the x-amz-copy-source-if-* headers with the same precedence, and
every failure there is a 412 (a copy has nothing to answer 304 with).
"""
from __future__ import annotations

from typing import Callable

from . import errors
from .xml import parse_http_date

NOT_MODIFIED = "not-modified"


def check_read(headers, record: dict) -> str | None:
    """Raise PreconditionFailed, return NOT_MODIFIED for a 304, or None to go on."""
    outcome = _unmet(lambda name: headers.get(name), record)
    if outcome is None:
        return None
    kind, condition = outcome
    if kind == NOT_MODIFIED:
        return NOT_MODIFIED
    raise _failed(condition)


def check_copy_source(headers, record: dict) -> None:
    """The same conditions under the x-amz-copy-source- prefix; each one unmet is a 412."""
    outcome = _unmet(lambda name: headers.get(_COPY_SOURCE + name), record)
    if outcome is not None:
        raise _failed(_COPY_SOURCE + outcome[1])


_COPY_SOURCE = "x-amz-copy-source-"


def _unmet(header, record: dict) -> tuple[str, str] | None:
    """The first condition in RFC 7232's order that the record does not meet, as
    ("failed" or NOT_MODIFIED, its header name), or None when all are met. One function
    for reads and copy sources, so their precedence cannot drift apart."""
    etag, modified = record["etag"], int(record["created"])
    if_match = header("If-Match")
    if if_match is not None:
        if not _etag_matches(if_match, etag):
            return "failed", "If-Match"
    else:
        since = parse_http_date(header("If-Unmodified-Since"))
        if since is not None and modified > since:
            return "failed", "If-Unmodified-Since"
    if_none = header("If-None-Match")
    if if_none is not None:
        if _etag_matches(if_none, etag):
            return NOT_MODIFIED, "If-None-Match"
    else:
        since = parse_http_date(header("If-Modified-Since"))
        if since is not None and modified <= since:
            return NOT_MODIFIED, "If-Modified-Since"
    return None


def write_condition(headers, resource: str, key: str) -> Callable[[dict | None], None] | None:
    """A check of the current record of the key being written, or None if unconditional."""
    if_none = headers.get("If-None-Match")
    if_match = headers.get("If-Match")
    if if_none is None and if_match is None:
        return None
    if if_none is not None and if_none.strip() != "*":
        raise errors.NotImplementedError_(
            "If-None-Match on a write supports only '*' (create the object only if it does not exist).")

    def check(current: dict | None) -> None:
        if if_none is not None and current is not None:
            raise _failed("If-None-Match")
        if if_match is not None:
            if current is None:
                raise errors.NoSuchKey(resource=resource, Key=key)
            if not _etag_matches(if_match, current["etag"]):
                raise _failed("If-Match")
    return check


def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate.strip('"') == etag:
            return True
    return False


def _failed(condition: str) -> errors.S3Error:
    return errors.PreconditionFailed(Condition=condition)
