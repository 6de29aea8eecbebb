"""AWS Signature Version 4 verification for S3 requests.

Deliberately free of aiohttp: every quirk of S3's canonicalisation (no double
encoding, no path normalisation, sort-after-encoding) has to be pinned down by
unit tests against botocore's real signer, and that is only cheap without a
server. The caller decides what to do with an anonymous request (None) and
checks the payload hash against the body it reads; this module only proves
who signed what.
"""
from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping
from urllib.parse import quote, unquote, unquote_to_bytes

from storage.s3.xml import parse_http_date
from storage.s3.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_PRESIGN_EXPIRES = 604800  # one week, S3's hard limit

_PAYLOAD_TOKENS = frozenset({UNSIGNED_PAYLOAD, STREAMING_PAYLOAD,
                             STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_TRAILER})
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_EXPIRES = re.compile(r"[0-9]{1,18}")
# Signature Version 2 requests are answered by sigv2.py (request.authenticate routes them
# there first); one that reaches this verifier anyway must fail, never pass as anonymous.
_V2_MESSAGE = "This is a Signature Version 2 request; it is verified by sigv2, not as Version 4."
_BAD_DATE = "AWS authentication requires a valid Date or x-amz-date header"

# Derived keys change once a day per (secret, region); caching them leaves the
# hot path at one SHA-256 and one HMAC. Bounded crudely: cleared when full.
_KEY_CACHE: dict[tuple[str, str, str, str], bytes] = {}
_KEY_CACHE_MAX = 1024


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)  # keep secrets out of logs and tracebacks


@dataclass
class AuthResult:
    access_key: str
    payload_hash: str      # x-amz-content-sha256: UNSIGNED-PAYLOAD, hex sha256 or STREAMING-* token
    signing_key: bytes = field(repr=False)  # kept to check aws-chunked chunk/trailer signatures
    seed_signature: str    # the request signature; chunk signatures chain from it
    scope: str             # "20261125/us-east-1/s3/aws4_request"
    amz_date: str          # ISO basic timestamp that was signed
    presigned: bool


def authenticate(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str],
                 secret_for: Callable[[str], str | None], now: float | None = None,
                 max_skew: float = 900) -> AuthResult | None:
    """Verify a request's SigV4 signature; None means it carried no auth at all.

    Raises an S3Error subclass for anything signed but not acceptable, so the
    handler can render it directly.
    """
    pairs = _split_query(raw_query)
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(unquote(name), unquote(value))
    authorization = headers.get("authorization")
    presigned = "X-Amz-Algorithm" in params
    if authorization is None and not presigned:
        if "AWSAccessKeyId" in params and "Signature" in params:
            raise InvalidRequest(_V2_MESSAGE)  # a V2 presigned URL must not pass as anonymous
        return None
    if authorization is not None and presigned:
        raise InvalidArgument("Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                              "parameter, Signature query string parameter or the Authorization "
                              "header should be specified", ArgumentName="Authorization")
    now = time.time() if now is None else now
    if presigned:
        credential, signed, signature, amz_date = _from_query(params, now, max_skew)
        pairs = [(n, v) for n, v in pairs if unquote(n) != "X-Amz-Signature"]
        payload = headers.get("x-amz-content-sha256") or UNSIGNED_PAYLOAD
    else:
        credential, signed, signature, amz_date = _from_header(authorization, headers, now, max_skew)
        payload = headers.get("x-amz-content-sha256")
        if payload is None:
            raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    if payload not in _PAYLOAD_TOKENS and not _HEX64.fullmatch(payload):
        raise InvalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-"
                              "HMAC-SHA256-PAYLOAD or a valid sha256 value.", ArgumentValue=payload)
    _check_all_signed(headers, signed)

    access_key, date, region, service = credential
    secret = secret_for(access_key)
    if secret is None:
        raise InvalidAccessKeyId(AWSAccessKeyId=access_key)
    key = _signing_key(secret, date, region, service)
    scope = f"{date}/{region}/{service}/aws4_request"
    canonical = "\n".join([
        method,
        _canonical_uri(raw_path),
        _canonical_query(pairs),
        "".join(f"{name}:{_header_value(headers, name)}\n" for name in signed),
        ";".join(signed),
        payload,
    ]).encode("utf-8", "surrogateescape")  # aiohttp decodes raw header bytes this way
    string_to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical).hexdigest()])
    expected = _hmac_hex(key, string_to_sign)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape")):
        raise SignatureDoesNotMatch(AWSAccessKeyId=access_key, StringToSign=string_to_sign,
                                    SignatureProvided=signature,
                                    CanonicalRequest=canonical.decode("utf-8", "replace"))
    return AuthResult(access_key=access_key, payload_hash=payload, signing_key=key,
                      seed_signature=expected, scope=scope, amz_date=amz_date, presigned=presigned)


def verify_chunk_signature(auth: AuthResult, previous_signature: str, chunk_sha256_hex: str) -> str:
    """Expected signature of one aws-chunked chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD).

    Returns rather than compares so the body reader can chain it as the next
    previous_signature; compare with hmac.compare_digest.
    """
    return _hmac_hex(auth.signing_key, "\n".join([
        "AWS4-HMAC-SHA256-PAYLOAD", auth.amz_date, auth.scope, previous_signature,
        EMPTY_SHA256, chunk_sha256_hex]))


def expected_trailer_signature(auth: AuthResult, previous_signature: str,
                               trailers: Iterable[tuple[str, str]]) -> str:
    """Expected x-amz-trailer-signature for STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER.

    previous_signature is that of the final zero-length chunk. The trailer
    block is signed as sorted "name:value\\n" lines, the signature line itself
    excluded (it cannot sign itself).
    """
    lines = sorted((name.strip().lower(), " ".join(value.split())) for name, value in trailers
                   if name.strip().lower() != "x-amz-trailer-signature")
    block = "".join(f"{name}:{value}\n" for name, value in lines).encode("utf-8", "surrogateescape")
    return _hmac_hex(auth.signing_key, "\n".join([
        "AWS4-HMAC-SHA256-TRAILER", auth.amz_date, auth.scope, previous_signature,
        hashlib.sha256(block).hexdigest()]))


def _from_header(value: str, headers: Mapping[str, str], now: float, max_skew: float):
    value = value.strip()
    if value.startswith("AWS "):
        raise InvalidRequest(_V2_MESSAGE)
    algorithm, _, rest = value.partition(" ")
    if algorithm != ALGORITHM:
        if algorithm.startswith("AWS4-"):
            raise InvalidArgument("Unsupported Authorization Type", ArgumentName="Authorization",
                                  ArgumentValue=value)
        raise AuthorizationHeaderMalformed()
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, val = part.partition("=")
        if eq:
            fields[name.strip()] = val.strip()
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise AuthorizationHeaderMalformed(
            "The authorization header is malformed; the authorization header requires three "
            "components: Credential, SignedHeaders, and Signature.")

    amz_date = headers.get("x-amz-date")
    if amz_date is not None:
        when = _parse_amz_date(amz_date)
    else:  # S3 still honours a plain Date header; the signed timestamp is its ISO form
        when = parse_http_date(headers.get("date"))
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when)) if when is not None else ""
    if when is None:
        raise AccessDenied(_BAD_DATE)
    credential = _parse_credential(fields["Credential"], amz_date, AuthorizationHeaderMalformed)
    if abs(now - when) > max_skew:
        raise RequestTimeTooSkewed(RequestTime=amz_date, ServerTime=_iso(now),
                                   MaxAllowedSkewMilliseconds=str(int(max_skew * 1000)))
    return credential, _signed_headers(fields["SignedHeaders"]), fields["Signature"], amz_date


def _from_query(params: dict[str, str], now: float, max_skew: float):
    missing = [p for p in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                           "X-Amz-SignedHeaders", "X-Amz-Signature") if p not in params]
    if missing:
        raise InvalidArgument("Query-string authentication version 4 requires the X-Amz-Algorithm, "
                              "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
                              "and X-Amz-Expires parameters.", ArgumentName=missing[0])
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise InvalidArgument('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"',
                              ArgumentName="X-Amz-Algorithm")
    amz_date = params["X-Amz-Date"]
    when = _parse_amz_date(amz_date)
    if when is None:
        raise InvalidArgument("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
                              ArgumentName="X-Amz-Date", ArgumentValue=amz_date)
    raw_expires = _expires(params["X-Amz-Expires"])
    credential = _parse_credential(params["X-Amz-Credential"], amz_date, InvalidArgument)
    if when - now > max_skew:
        raise RequestTimeTooSkewed(RequestTime=amz_date, ServerTime=_iso(now),
                                   MaxAllowedSkewMilliseconds=str(int(max_skew * 1000)))
    expires = int(raw_expires)
    if now > when + expires:
        raise AccessDenied("Request has expired", **{"X-Amz-Expires": raw_expires,
                                                     "Expires": _iso(when + expires),
                                                     "ServerTime": _iso(now)})
    return credential, _signed_headers(params["X-Amz-SignedHeaders"]), params["X-Amz-Signature"], amz_date


def _expires(raw: str) -> str:
    """X-Amz-Expires as S3 checks it: 0 is a URL that has already expired (403 once used),
    a negative, a non-number or more than a week is a malformed URL (400, with S3's words)."""
    if raw.startswith("-") and _EXPIRES.fullmatch(raw[1:]):
        raise AuthorizationQueryParametersError("X-Amz-Expires must be non-negative",
                                                ArgumentName="X-Amz-Expires", ArgumentValue=raw)
    if not _EXPIRES.fullmatch(raw):
        raise AuthorizationQueryParametersError("X-Amz-Expires should be a number",
                                                ArgumentName="X-Amz-Expires", ArgumentValue=raw)
    if int(raw) > MAX_PRESIGN_EXPIRES:
        raise AuthorizationQueryParametersError(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800 seconds",
            ArgumentName="X-Amz-Expires", ArgumentValue=raw)
    return raw


def _parse_credential(value: str, amz_date: str, error: type) -> tuple[str, str, str, str]:
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or not all(parts) or parts[4] != "aws4_request":
        raise error('The Credential is mal-formed; expecting '
                    f'"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request". ({value})')
    access_key, date, region, service, _ = parts
    if service != "s3":
        raise error(f'The authorization header is malformed; incorrect service "{service}". '
                    'This endpoint belongs to "s3".')
    if date != amz_date[:8]:
        raise error(f'Invalid credential date "{date}". This date is not the same as X-Amz-Date: '
                    f'"{amz_date[:8]}".')
    return access_key, date, region, service


def _check_all_signed(headers: Mapping[str, str], signed: list[str]) -> None:
    """Signed means signed: `host` and every `x-amz-*` header sent must be in SignedHeaders.

    Otherwise whoever holds a presigned URL (or captured a signed request) could add
    `x-amz-copy-source` or `x-amz-acl` and turn an upload into a public copy of anything
    the signer can read. S3's only exception is x-amz-content-sha256, which is checked
    against the body anyway (presigned query parameters are not headers at all)."""
    covered = set(signed)
    unsigned = sorted({name.lower() for name in headers
                       if name.lower().startswith("x-amz-") and name.lower() not in covered}
                      - {"x-amz-content-sha256"})
    if "host" not in covered:
        unsigned.insert(0, "host")
    if unsigned:
        raise AccessDenied("There were headers present in the request which were not signed",
                           HeadersNotSigned=", ".join(unsigned))


def _signed_headers(value: str) -> list[str]:
    return [h.strip().lower() for h in value.split(";") if h.strip()]


def _header_value(headers: Mapping[str, str], name: str) -> str:
    """All values of a header, trimmed, internal whitespace runs collapsed, comma-joined."""
    getall = getattr(headers, "getall", None)
    values = getall(name, []) if getall else [v for v in [headers.get(name)] if v is not None]
    return ",".join(" ".join(v.split()) for v in values)


def _canonical_uri(raw_path: str) -> str:
    """S3 signs the path single-encoded and un-normalised: '//' and '.' survive."""
    return quote(_unquote(raw_path or "/"), safe="/")


def _unquote(text: str) -> bytes:
    """Percent-decode to bytes; surrogateescape undoes aiohttp's decoding of raw non-UTF-8 bytes."""
    return unquote_to_bytes(text.encode("utf-8", "surrogateescape"))


def _split_query(raw_query: str) -> list[tuple[str, str]]:
    """Raw (name, value) pairs; a bare 'acl' is ('acl', ''), empty segments are dropped."""
    return [(name, value) for name, _, value in (item.partition("=") for item in raw_query.split("&"))
            if name or value]


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    """Sort after re-encoding, as signers do: '%2F' sorts before '-', decoded '/' after it."""
    encoded = sorted((quote(_unquote(n), safe=""), quote(_unquote(v), safe="")) for n, v in pairs)
    return "&".join(f"{n}={v}" for n, v in encoded)


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    cache_key = (secret, date, region, service)
    key = _KEY_CACHE.get(cache_key)
    if key is None:
        key = ("AWS4" + secret).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
            _KEY_CACHE.clear()
        _KEY_CACHE[cache_key] = key
    return key


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=256)
def _parse_amz_date(value: str) -> float | None:
    """Cached: concurrent requests mostly carry the same second, and time.strptime was 4 %
    of a 4 KiB GET's CPU (py-spy)."""
    if not _AMZ_DATE.fullmatch(value):
        return None
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_credential(value: str, amz_date: str, error: type) -> tuple[str, str, str, str]:
    """(access key, date, region, service) of a credential scope; `error` if malformed.
    For signatures that are not in a header or the query (POST object forms)."""
    return _parse_credential(value, amz_date, error)


def sign_policy(secret: str, date: str, region: str, service: str, policy: str) -> str:
    """The SigV4 signature of a POST object policy (its base64 text) with the day's key."""
    return _hmac_hex(_signing_key(secret, date, region, service), policy)
