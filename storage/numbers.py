"""Decimal numbers from the wire, parsed the way S3 parses them.

`str.isdigit()` is true for "²" and "٣", `int()` accepts "٣", " 5", "+5" and "1_000",
and a 10^30 from a client overflows everything downstream (orjson, datetime, the
index). Every number a request carries goes through `decimal()` instead: ASCII
digits only, nothing else, and a bound, so a bad value is the caller's 4xx and never
reaches a place where it becomes a 500.
"""
from __future__ import annotations

MAX_INT32 = (1 << 31) - 1   # S3's xsd:int fields (MaxAgeSeconds, Days)
MAX_INT64 = (1 << 63) - 1   # S3's xsd:long fields (sizes); also what the index's JSON encoder takes
_DIGITS = frozenset("0123456789")


def decimal(text: str | bytes | None, maximum: int = MAX_INT64) -> int | None:
    """A non-negative decimal of ASCII digits at most `maximum`, else None.

    Leading zeros are allowed (S3 accepts `Content-Length: 007`); signs, spaces,
    underscores and non-ASCII digits are not."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not text or not _DIGITS.issuperset(text):
        return None
    stripped = text.lstrip("0") or "0"
    if len(stripped) > len(str(maximum)):   # don't build a huge int just to refuse it
        return None
    value = int(stripped)
    return value if value <= maximum else None
