"""Server-side encryption headers: which key a request gives, and what a response says.

Checked before anything is stored or read, so a refusal changes nothing:
- SSE-C (`x-amz-server-side-encryption-customer-*`, and `x-amz-copy-source-...` for a
  copy's source): AES256, a base64 256-bit key whose MD5 matches, over TLS (or plain HTTP
  when `encryption.allow_http_customer_keys` says so). An SSE-C object is read only with
  its key: none given is 400 InvalidRequest, a wrong one 403 AccessDenied, as S3 answers.
- SSE-S3 (`x-amz-server-side-encryption: AES256`) and SSE-KMS (`aws:kms`, a key id, an
  optional base64 JSON context), or the bucket's default encryption when the request
  names none (bucket_encryption.py).
The keys themselves are crypto/keys.py's.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re

from ..crypto.keys import SSE_C, SSE_KMS, SSE_S3, KeyUnavailable, Sealing
from . import errors
from .request import S3Request

SSE = "x-amz-server-side-encryption"
CUSTOMER = SSE + "-customer-"
COPY_CUSTOMER = "x-amz-copy-source-server-side-encryption-customer-"
KMS_KEY_ID = SSE + "-aws-kms-key-id"
CONTEXT = SSE + "-context"
BUCKET_KEY = SSE + "-bucket-key-enabled"
_MD5 = re.compile(r"^[A-Za-z0-9+/]{22}==$")
_STORED_ENCRYPTED = ("The object was stored using a form of Server Side Encryption. The correct parameters must "
                     "be provided to retrieve the object.")


def customer_key(req: S3Request, prefix: str = CUSTOMER, headers=None) -> bytes | None:
    """The SSE-C key a request gives (checked against its MD5), or None if it gives none;
    `headers`: a POST form's fields, which stand in for the request's headers."""
    h = req.headers if headers is None else headers
    algorithm, key, md5 = h.get(prefix + "algorithm"), h.get(prefix + "key"), h.get(prefix + "key-MD5")
    if algorithm is None and key is None and md5 is None:
        return None
    if algorithm is None:
        raise errors.InvalidArgument("Requests specifying Server Side Encryption with Customer provided keys "
                                     "must provide a valid encryption algorithm.",
                                     ArgumentName=prefix + "algorithm", ArgumentValue="null")
    if algorithm != "AES256":
        raise errors.InvalidArgument("The encryption algorithm specified is not valid; use AES256.",
                                     ArgumentName=prefix + "algorithm", ArgumentValue=algorithm)
    if key is None:
        raise errors.InvalidArgument("Requests specifying Server Side Encryption with Customer provided keys "
                                     "must provide an appropriate secret key.",
                                     ArgumentName=prefix + "key", ArgumentValue="null")
    if md5 is None:
        raise errors.InvalidArgument("Requests specifying Server Side Encryption with Customer provided keys "
                                     "must provide the client calculated MD5 of the secret key.",
                                     ArgumentName=prefix + "key-MD5", ArgumentValue="null")
    raw = _b64(key)
    if raw is None or len(raw) != 32:
        raise errors.InvalidArgument("The secret key was invalid for the specified algorithm.",
                                     ArgumentName=prefix + "key", ArgumentValue="redacted")
    if base64.b64encode(hashlib.md5(raw).digest()).decode() != md5.strip():   # (an MD5 of the key is no secret)
        raise errors.InvalidArgument("The calculated MD5 hash of the key did not match the hash that was provided.",
                                     ArgumentName=prefix + "key-MD5", ArgumentValue=md5)
    if not _secure(req):
        raise errors.InvalidRequest("Requests specifying Server Side Encryption with Customer provided keys "
                                    "must be made over a secure connection.")
    return raw


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _secure(req: S3Request) -> bool:
    if req.http.secure or req.headers.get("X-Forwarded-Proto", "").lower() == "https":
        return True
    return req.gateway.cfg.encryption.allow_http_customer_keys


def names_encryption(req: S3Request) -> bool:
    """Does the request itself ask for an encryption (a copy onto itself may change only that)?"""
    return SSE in req.headers or CUSTOMER + "algorithm" in req.headers


def for_new_object(req: S3Request, bucket: dict, headers=None) -> Sealing | None:
    """How a PUT, copy, CreateMultipartUpload or POST object (`headers`: the form's fields)
    wants its object encrypted; None: not at all."""
    h = req.headers if headers is None else headers
    key = customer_key(req, headers=h)
    mode = h.get(SSE)
    if key is not None:
        if mode is not None:
            raise errors.InvalidArgument("Server Side Encryption with Customer provided key is incompatible with "
                                         "the encryption method specified", ArgumentName=SSE, ArgumentValue=mode)
        return Sealing(SSE_C, customer_key=key)
    if mode is None:
        for header in (KMS_KEY_ID, CONTEXT):
            if header in h:
                raise errors.InvalidArgument(f"{header} is only valid with {SSE}: aws:kms",
                                             ArgumentName=header, ArgumentValue=h[header])
        return _bucket_default(req, bucket)
    if mode == SSE_S3:
        if KMS_KEY_ID in h or CONTEXT in h:
            raise errors.InvalidArgument("Server Side Encryption with AES256 takes no KMS key id or context",
                                         ArgumentName=SSE, ArgumentValue=mode)
        return _usable(req, Sealing(SSE_S3, bucket_key=_flag(h)))
    if mode in (SSE_KMS, "aws:kms:dsse"):
        return _usable(req, Sealing(SSE_KMS, kms_key_id=h.get(KMS_KEY_ID, ""),
                                    context=_context(h.get(CONTEXT)), bucket_key=_flag(h)))
    raise errors.InvalidArgument("The encryption method specified is not supported", ArgumentName=SSE,
                                 ArgumentValue=mode)


def _flag(headers) -> bool:
    return headers.get(BUCKET_KEY, "").lower() == "true"


def _context(value: str | None) -> str:
    """The encryption context as canonical JSON ("" for none): a base64 JSON object of strings."""
    if value is None:
        return ""
    raw = _b64(value)
    try:
        context = json.loads(raw) if raw is not None else None
    except ValueError:
        context = None
    if not isinstance(context, dict) or not all(isinstance(v, str) for v in context.values()):
        raise errors.InvalidArgument("The encryption context must be the base64 of a JSON object of strings.",
                                     ArgumentName=CONTEXT, ArgumentValue=value)
    return json.dumps(context, sort_keys=True, separators=(",", ":"))


def _usable(req: S3Request, sealing: Sealing) -> Sealing:
    """The sealing with its KMS key id resolved to a configured key (else S3's KMS error)."""
    keys = req.gateway.objects.keys
    try:
        name = keys.kms_key_name(sealing.kms_key_id)
    except KeyUnavailable as e:
        raise errors.KMSNotFound(f"{e}.") from None
    return Sealing(sealing.mode, kms_key_id=name, context=sealing.context, bucket_key=sealing.bucket_key)


def _bucket_default(req: S3Request, bucket: dict) -> Sealing | None:
    rule = bucket.get("encryption")
    if not rule:
        return None
    return _usable(req, Sealing(rule["algorithm"], kms_key_id=rule.get("kms_key_id", ""),
                                bucket_key=bool(rule.get("bucket_key"))))


def for_part(req: S3Request, upload: dict) -> Sealing | None:
    """How UploadPart seals a part: as the upload was created (SSE-C: with the same key again)."""
    sse = upload["attrs"].get("sse")
    key = customer_key(req)
    if not sse or sse["mode"] != SSE_C:
        if key is not None:
            raise errors.InvalidRequest("The multipart upload was not initiated with Server Side Encryption with "
                                        "Customer provided keys; this part may not give one.")
        if not sse:
            return None
        return Sealing(sse["mode"], kms_key_id=sse.get("kid", ""), context=sse.get("context", ""),
                       bucket_key=bool(sse.get("bucket_key")))
    if key is None:
        raise errors.InvalidRequest("The multipart upload initiate requested encryption. Subsequent part "
                                    "requests must include the appropriate encryption parameters.")
    if not req.gateway.objects.keys.customer_key_matches(sse, key):
        raise errors.InvalidArgument("The provided encryption parameters did not match the ones used "
                                     "originally.", ArgumentName=CUSTOMER + "key", ArgumentValue="redacted")
    return Sealing(SSE_C, customer_key=key)


def refuse_sealing_on_read(req: S3Request) -> None:
    """GET and HEAD name no SSE-S3/KMS settings: S3 answers 400 InvalidArgument rather than
    ignore them (s3-tests' test_sse_kms_read_declare and test_sse_kms_method_head)."""
    for header in (SSE, KMS_KEY_ID, CONTEXT, BUCKET_KEY):
        if header in req.headers:
            raise errors.InvalidArgument(f"{header} header is not supported for this operation.",
                                         ArgumentName=header, ArgumentValue=req.headers[header])


def key_to_read(req: S3Request, record: dict, prefix: str = CUSTOMER) -> bytes | None:
    """The customer key a GET, HEAD or copy source needs, checked; None for other objects."""
    key = customer_key(req, prefix)
    sse = record.get("sse") or {}
    if sse.get("mode") != SSE_C:
        if key is not None:
            raise errors.InvalidRequest("The encryption parameters are not applicable to this object.")
        return None
    if key is None:
        raise errors.InvalidRequest(_STORED_ENCRYPTED)
    if not req.gateway.objects.keys.customer_key_matches(sse, key):
        raise errors.AccessDenied("The secret key given does not match the one this object was stored with.")
    return key


def response_headers(req: S3Request, record: dict, headers=None) -> dict[str, str]:
    """x-amz-server-side-encryption* of a response about this version (`headers`: as above)."""
    sse = record.get("sse")
    if not sse:
        return {}
    if sse["mode"] == SSE_C:
        md5 = (req.headers if headers is None else headers).get(CUSTOMER + "key-MD5", "").strip()   # echoed only when it is one (Complete has none)
        return {CUSTOMER + "algorithm": "AES256", **({CUSTOMER + "key-MD5": md5} if _MD5.match(md5) else {})}
    headers = {SSE: sse["mode"]}
    if sse["mode"] == SSE_KMS:
        headers[KMS_KEY_ID] = sse.get("kid", "")
    if sse.get("bucket_key"):
        headers[BUCKET_KEY] = "true"
    return headers


def context_header(record: dict) -> dict[str, str]:
    """The encryption context echoed to a PUT or copy, as S3 does (base64 JSON)."""
    context = (record.get("sse") or {}).get("context")
    return {CONTEXT: base64.b64encode(context.encode()).decode()} if context else {}
