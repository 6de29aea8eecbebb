"""An upload's body, whatever way the client chose to send it.

S3 bodies arrive in one of five payload modes, named by x-amz-content-sha256:
a hex SHA-256 (signed whole), `UNSIGNED-PAYLOAD`, or one of the aws-chunked modes
(`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`).
`open_body` turns any of them into the same thing for the object service: a stream
of the object's bytes, its declared size, and the `BodyDigests` that will judge the
bytes before anything is committed. PutObject uses it; UploadPart can too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

from multidict import CIMultiDict

from ..numbers import decimal
from . import errors, sigv4
from .chunked import ChunkedDecoder
from .digests import BodyDigests
from .limits import BodyPace
from .names import header_text
from .request import S3Request

MAX_PUT_BYTES = 5 << 30
STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")
_READ = 1 << 20


@dataclass
class UploadBody:
    stream: AsyncIterator[bytes]
    length: int | None      # the object's size as declared (decoded size for aws-chunked)
    digests: BodyDigests


def open_body(req: S3Request, max_bytes: int = MAX_PUT_BYTES) -> UploadBody:
    payload = req.auth.payload_hash if req.auth else sigv4.UNSIGNED_PAYLOAD
    if payload.startswith("STREAMING-"):
        return _chunked(req, payload, max_bytes)
    length = req.declared_length()
    if length is None and req.headers.get("Transfer-Encoding", "").lower() != "chunked":
        raise errors.MissingContentLength()
    _check_size(length, max_bytes)
    digests = BodyDigests(req.headers, length, None if payload == sigv4.UNSIGNED_PAYLOAD else payload.lower())
    return UploadBody(_counted(req, raw_body(req)), length, digests)


def stored_headers(headers) -> dict[str, str]:
    """The standard headers an object keeps; aws-chunked in Content-Encoding describes the transfer only."""
    kept = {h: header_text(h, headers[h]) for h in STORED_HEADERS if h in headers}
    if "Content-Encoding" in kept:
        codings = [v.strip() for v in kept.pop("Content-Encoding").split(",")]
        codings = [c for c in codings if c and c.lower() != "aws-chunked"]
        if codings:
            kept["Content-Encoding"] = ",".join(codings)
    return kept


def _chunked(req: S3Request, payload: str, max_bytes: int) -> UploadBody:
    decoded = req.headers.get("x-amz-decoded-content-length")
    if decoded is None:
        raise errors.MissingContentLength("An aws-chunked upload must send x-amz-decoded-content-length.")
    length = decimal(decoded)
    if length is None:
        raise errors.InvalidArgument("x-amz-decoded-content-length must be a non-negative integer",
                                     ArgumentName="x-amz-decoded-content-length", ArgumentValue=decoded)
    _check_size(length, max_bytes)
    trailer_mode = payload.endswith("-TRAILER")
    signed = payload != sigv4.STREAMING_UNSIGNED_TRAILER
    digests = BodyDigests(req.headers, length, None,
                          trailer=req.headers.get("x-amz-trailer", "") if trailer_mode else None)
    decoder = ChunkedDecoder(_counted(req, raw_body(req)), auth=req.auth if signed else None, trailers=trailer_mode,
                             on_trailer=digests.receive_trailer)
    return UploadBody(_at_most(decoder, length), length, digests)


async def _at_most(decoder: ChunkedDecoder, length: int) -> AsyncIterator[bytes]:
    """Stop a body that runs past its declared size before it fills any more disk."""
    async for piece in decoder:
        if decoder.decoded > length:
            raise errors.IncompleteBody(
                f"x-amz-decoded-content-length said {length} bytes but more arrived")
        yield piece


def _check_size(length: int | None, max_bytes: int) -> None:
    if length is not None and length > max_bytes:
        raise errors.EntityTooLarge(
            f"A single PUT may carry at most {max_bytes} bytes; use multipart upload for {length} bytes.",
            ProposedSize=str(length), MaxSizeAllowed=str(max_bytes))


async def _counted(req: S3Request, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Count upload bytes as they arrive (pocket_s3_bytes_received): an operator sees
    ingest throughput, and a test sees how far a slow upload has got."""
    received = req.gateway.metrics.bytes_in
    async for chunk in stream:
        received.inc(len(chunk))
        yield chunk


async def raw_body(req: S3Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; a connection that dies mid-body is IncompleteBody, one
    that stalls or trickles is cut (limits.BodyPace)."""
    gw = req.gateway.cfg.gateway
    pace = BodyPace(gw.body_timeout, gw.body_min_rate)
    await _continue(req.http)
    try:
        while chunk := await pace.read(req.http.content, _READ):
            yield chunk
    except errors.S3Error:
        raise
    except Exception as e:
        raise errors.IncompleteBody(f"The request body ended early: {e}") from e


async def _continue(http) -> None:
    """The `100 Continue` an `Expect: 100-continue` client waits for (app._expect defers it to
    here): sent once the request was authenticated and allowed, just before its body is read."""
    if http.get("expect_continue") and not http.get("continued"):
        http["continued"] = True
        await http.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        http.writer.output_size = 0   # the response proper has not started


async def read_small(req: S3Request, limit: int, require_digest: bool = False, body_checksums: bool = True) -> bytes:
    """A small request body (XML), checked against Content-MD5, x-amz-checksum-* and the signed sha256.

    `require_digest`: the operation needs Content-MD5 or, as current SDKs send instead,
    an x-amz-checksum-* header (DeleteObjects). `body_checksums=False`: x-amz-checksum-*
    headers describe something else (CompleteMultipartUpload: the object's checksum)."""
    length = req.declared_length()
    if length is not None and length > limit:
        raise errors.MaxMessageLengthExceeded(f"The request body may be at most {limit} bytes.")
    if require_digest and "Content-MD5" not in req.headers and not any(
            h.lower().startswith("x-amz-checksum-") for h in req.headers):
        raise errors.InvalidRequest("Missing required header for this request: Content-MD5 "
                                    "(or an x-amz-checksum-* header)")
    payload = req.auth.payload_hash if req.auth else sigv4.UNSIGNED_PAYLOAD
    if payload.startswith("STREAMING-"):
        raise errors.InvalidRequest(f"x-amz-content-sha256 {payload} is only accepted for object uploads.")
    body = bytearray()
    async for chunk in raw_body(req):
        body += chunk
        if len(body) > limit:
            raise errors.MaxMessageLengthExceeded(f"The request body may be at most {limit} bytes.")
    headers = req.headers if body_checksums else CIMultiDict(
        (k, v) for k, v in req.headers.items() if not k.lower().startswith("x-amz-checksum-"))
    digests = BodyDigests(headers, length, None if payload == sigv4.UNSIGNED_PAYLOAD else payload.lower())
    digests.update(bytes(body))
    digests.finish(len(body))
    return bytes(body)
