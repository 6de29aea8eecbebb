"""S3's rules for bucket names, keys and user metadata, checked before anything changes."""
from __future__ import annotations

import base64
import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from ..numbers import decimal
from . import errors

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")
HEADER_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048


def check_bucket_name(name: str) -> None:
    if (not _BUCKET.match(name) or ".." in name or ".-" in name or "-." in name or _IP.match(name)
            or name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3"))):
        raise errors.InvalidBucketName(
            "Bucket names must be 3-63 characters of lowercase letters, digits, '.' and '-', "
            "start and end with a letter or digit, and not look like an IP address.", resource=name)


def check_key(key: str) -> None:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise errors.KeyTooLongError(f"Your key is too long: at most {MAX_KEY_BYTES} bytes of UTF-8 are allowed.",
                                     MaxSizeAllowed=str(MAX_KEY_BYTES))
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.InvalidArgument("Object key is not valid UTF-8.") from None


def header_text(name: str, value: str) -> str:
    """A header value Pocket will send back later (stored metadata, a response-* override).

    aiohttp hands raw bytes that are not UTF-8 through as lone surrogates, and a
    query parameter may carry CR/LF: either would fail when the response is written,
    a 500 after the object was stored. Refused here, before anything changes."""
    if HEADER_UNSAFE.search(value):
        raise errors.InvalidArgument(f"The value of {name} must be UTF-8 text without control characters.",
                                     ArgumentName=name, ArgumentValue=value)
    return value


def content_type(headers) -> str:
    return header_text("Content-Type", headers.get("Content-Type") or "binary/octet-stream")


def user_metadata(headers) -> dict[str, str]:
    """x-amz-meta-* as stored: RFC 2047 encoded words decoded first, as S3 does (clients send
    non-ASCII values that way, since HTTP headers are ASCII)."""
    meta = {k.lower()[len("x-amz-meta-"):]: _decoded(k, header_text(k, v)) for k, v in headers.items()
            if k.lower().startswith("x-amz-meta-")}
    size = sum(len(k) + len(v.encode()) for k, v in meta.items())
    if size > MAX_METADATA_BYTES:
        raise errors.MetadataTooLarge(
            f"Your metadata headers total {size} bytes; at most {MAX_METADATA_BYTES} are allowed.",
            MaxSizeAllowed=str(MAX_METADATA_BYTES))
    return meta


def _decoded(name: str, value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return header_text(name, str(make_header(decode_header(value))))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return value   # not a valid encoded word: kept as sent, as S3 keeps it


def mail_safe(value: str) -> str:
    """A stored metadata value as S3 returns it: ASCII as is, anything else RFC 2047
    encoded (=?UTF-8?B?...?=), so every client can read the header back."""
    if value.isascii():
        return value
    return f"=?UTF-8?B?{base64.b64encode(value.encode('utf-8', 'surrogateescape')).decode()}?="


MAX_PART_NUMBER = 10_000


def check_part_number(value: str | None) -> int:
    """A partNumber query value: an integer 1..10000, else InvalidArgument."""
    number = decimal(value, MAX_PART_NUMBER)
    if not number:
        raise errors.InvalidArgument(f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
                                     ArgumentName="partNumber", ArgumentValue=str(value))
    return number
