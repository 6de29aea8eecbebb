"""Hand-made S3 requests for what SDKs will not send over plain http.

botocore signs the headers (it is the reference signer the unit tests pin the gateway
against); the aws-chunked bodies and their chunk/trailer signatures are computed here
from AWS's documented algorithm, independently of storage/s3/sigv4.py.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes, urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .harness import ACCESS_KEY, SECRET_KEY

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class _FixedPayloadSigner(S3SigV4Auth):
    """botocore's S3 signer, with x-amz-content-sha256 chosen by the caller."""

    def __init__(self, payload: str, secret: str = SECRET_KEY):
        super().__init__(Credentials(ACCESS_KEY, secret), "s3", "us-east-1")
        self._payload = payload

    def payload(self, request):
        return self._payload


@dataclass
class Signed:
    url: str
    method: str
    headers: dict
    signature: str
    amz_date: str
    scope: str
    key: bytes


def sign(method: str, url: str, headers: dict | None = None, payload: str = "UNSIGNED-PAYLOAD") -> Signed:
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    _FixedPayloadSigner(payload).add_auth(request)
    out = dict(request.headers.items())
    signature = out["Authorization"].rsplit("Signature=", 1)[1]
    amz_date = out["X-Amz-Date"]
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (amz_date[:8], "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return Signed(url, method, out, signature, amz_date, scope, key)


def _hmac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def signed_chunks(s: Signed, data: bytes, chunk_size: int, trailer: list[tuple[str, str]] | None = None,
                  tamper_chunk: int | None = None) -> bytes:
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] body for `data`."""
    previous = s.signature
    out = bytearray()
    pieces = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for n, piece in enumerate(pieces):
        previous = _hmac(s.key, "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", s.amz_date, s.scope, previous,
                                           EMPTY_SHA256, hashlib.sha256(piece).hexdigest()]))
        sig = previous if n != tamper_chunk else "0" * 64
        out += b"%x;chunk-signature=%s\r\n" % (len(piece), sig.encode())
        if piece:
            out += piece + b"\r\n"
    if trailer is None:
        return bytes(out + b"\r\n")
    block = "".join(f"{name}:{value}\n" for name, value in sorted(trailer))
    trailer_sig = _hmac(s.key, "\n".join(["AWS4-HMAC-SHA256-TRAILER", s.amz_date, s.scope, previous,
                                          hashlib.sha256(block.encode()).hexdigest()]))
    for name, value in trailer:
        out += f"{name}:{value}\r\n".encode()
    out += f"x-amz-trailer-signature:{trailer_sig}\r\n\r\n".encode()
    return bytes(out)


def send(s: Signed, body=b"", extra_headers: dict | None = None) -> tuple[int, dict, bytes]:
    """Send a signed request; `body` is bytes or an iterable of bytes (sent with chunked TE)."""
    parts = urlsplit(s.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {**s.headers, **(extra_headers or {})}
        if isinstance(body, (bytes, bytearray)):
            conn.request(s.method, path, body=body, headers=headers)
        else:
            conn.request(s.method, path, body=body, headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def sign_bytes(method: str, target: bytes, headers: list[tuple[bytes, bytes]], payload: str = "UNSIGNED-PAYLOAD",
               unsigned: tuple[bytes, ...] = (), secret: str = SECRET_KEY) -> list[tuple[bytes, bytes]]:
    """SigV4 over raw bytes, from AWS's documented algorithm (no SDK will sign a header
    value that is not UTF-8): `headers` (Host included) plus x-amz-date,
    x-amz-content-sha256 and Authorization; headers named in `unsigned` are sent but
    left out of SignedHeaders."""
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()).encode()
    headers = list(headers) + [(b"x-amz-date", amz_date), (b"x-amz-content-sha256", payload.encode())]
    path, _, query = target.partition(b"?")
    pairs = sorted((quote(unquote_to_bytes(n), safe=""), quote(unquote_to_bytes(v), safe=""))
                   for n, _, v in (item.partition(b"=") for item in query.split(b"&")) if n or v)
    grouped: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        if name.lower() not in unsigned:
            grouped.setdefault(name.lower(), []).append(b" ".join(value.split()))
    names = sorted(grouped)
    canonical = b"\n".join([
        method.encode(), quote(unquote_to_bytes(path or b"/"), safe="/").encode(),
        "&".join(f"{n}={v}" for n, v in pairs).encode(),
        b"".join(n + b":" + b",".join(grouped[n]) + b"\n" for n in names), b";".join(names), payload.encode()])
    scope = f"{amz_date[:8].decode()}/us-east-1/s3/aws4_request"
    key = ("AWS4" + secret).encode()
    for part in (amz_date[:8].decode(), "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date.decode(), scope, hashlib.sha256(canonical).hexdigest()])
    signature = _hmac(key, to_sign)
    auth = f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={';'.join(n.decode('latin-1') for n in names)}, " \
           f"Signature={signature}"
    return headers + [(b"Authorization", auth.encode("latin-1"))]
