"""AWS Signature Version 2, header and presigned-query forms, verified.

S3 still accepts SigV2 and boto3's `generate_presigned_url` produces it by default
(`?AWSAccessKeyId=&Expires=&Signature=`), so applications that hand such URLs to
browsers would break on a store that refused it. The string to sign is:

    method \n Content-MD5 \n Content-Type \n Date-or-Expires \n
    canonical x-amz-* headers (name:value\n, sorted) + canonical resource

where the resource is `/bucket/key` as sent (also for virtual-host style) plus the
sub-resources S3 lists, sorted. HMAC-SHA1 over the secret key, base64.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Callable, Mapping
from urllib.parse import unquote

from ..numbers import decimal
from . import errors, sigv4
from .xml import parse_http_date

# The query parameters that are part of the resource (botocore's HmacV1Auth list).
SUBRESOURCES = frozenset({
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
    "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging", "restore",
    "storageClass", "notification", "replication", "analytics", "metrics", "inventory", "select", "select-type",
    "object-lock"})
MAX_SKEW = 900


def applies(headers: Mapping[str, str], raw_query: str) -> bool:
    if headers.get("Authorization", "").startswith("AWS "):
        return True
    names = {p.split("=", 1)[0] for p in raw_query.split("&")}
    return "AWSAccessKeyId" in names and "Signature" in names


def authenticate(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str],
                 secret_for: Callable[[str], str | None], bucket_in_host: str | None = None,
                 now: float | None = None) -> sigv4.AuthResult:
    now = time.time() if now is None else now
    params = {}
    for part in raw_query.split("&") if raw_query else ():
        name, _, value = part.partition("=")
        params.setdefault(unquote(name), unquote(value))
    auth = headers.get("Authorization", "")
    if auth.startswith("AWS "):
        access_key, sep, signature = auth[4:].strip().rpartition(":")
        if not sep or not access_key:
            raise errors.AuthorizationHeaderMalformed("The Authorization header must be 'AWS AccessKeyId:Signature'.")
        stamp = "" if "x-amz-date" in headers else headers.get("Date", "")
        when = parse_http_date(headers.get("x-amz-date") or headers.get("Date"))
        if when is None:
            raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
        if abs(now - when) > MAX_SKEW:
            raise errors.RequestTimeTooSkewed()
        presigned = False
    else:
        access_key, signature, stamp = params["AWSAccessKeyId"], params["Signature"], params.get("Expires", "")
        expires = decimal(stamp)
        if expires is None:
            raise errors.AccessDenied("Query-string authentication requires the Expires parameter: "
                                      "a time in seconds since the epoch")
        if now > expires:
            raise errors.AccessDenied("Request has expired", Expires=stamp)
        if expires - now > sigv4.MAX_PRESIGN_EXPIRES:
            raise errors.AccessDenied("A presigned URL may be valid for at most 7 days (604800 seconds); "
                                      "sign a new one with a closer Expires", Expires=stamp)
        presigned = True
    secret = secret_for(access_key)
    if secret is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)
    path = (f"/{bucket_in_host}" if bucket_in_host else "") + raw_path
    # A bucket is "/bucket/" to S3 and to botocore's clients; some signers leave the slash off.
    paths = [path + "/", path] if path.count("/") == 1 else [path]
    head = "\n".join([method, headers.get("Content-MD5", ""), headers.get("Content-Type", ""), stamp, ""])
    head += _amz_headers(headers)
    string_to_sign = ""
    for p in paths:
        string_to_sign = head + p + _subresources(params)
        want = base64.b64encode(hmac.new(secret.encode(), string_to_sign.encode("utf-8", "surrogateescape"),
                                         hashlib.sha1).digest()).decode()
        if hmac.compare_digest(want, signature):
            break
    else:
        raise errors.SignatureDoesNotMatch(AWSAccessKeyId=access_key, StringToSign=string_to_sign,
                                           SignatureProvided=signature)
    return sigv4.AuthResult(access_key=access_key, payload_hash=sigv4.UNSIGNED_PAYLOAD, signing_key=b"",
                            seed_signature="", scope="", amz_date="", presigned=presigned)


def _amz_headers(headers) -> str:
    amz: dict[str, list[str]] = {}
    for name, value in headers.items():
        if name.lower().startswith("x-amz-"):
            amz.setdefault(name.lower(), []).append(value.strip())
    return "".join(f"{name}:{','.join(values)}\n" for name, values in sorted(amz.items()))


def _subresources(params: dict[str, str]) -> str:
    picked = sorted((n, v) for n, v in params.items() if n in SUBRESOURCES)
    if not picked:
        return ""
    return "?" + "&".join(f"{n}={v}" if v else n for n, v in picked)


