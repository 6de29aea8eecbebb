"""Everything an S3 upload promises about its body, checked before anything is kept.

One `BodyDigests` per upload is fed every byte (off the event loop for big segments).
`finish()` compares what arrived with what the client declared: Content-Length,
Content-MD5, the signed x-amz-content-sha256, and x-amz-checksum-* values, whether sent
as headers or (aws-chunked uploads) declared in x-amz-trailer and sent after the body.
Any mismatch raises, the object service aborts every fragment archive, and nothing is
stored.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import zlib

from . import errors

CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
_CRC_BYTES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8}


class _Crc:
    def __init__(self, fn, width: int):
        self.fn, self.width, self.value = fn, width, 0

    def update(self, data: bytes) -> None:
        self.value = self.fn(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.width, "big")


def new_checksum(algorithm: str):
    """A hashlib-like object for one of S3's checksum algorithms."""
    if algorithm == "crc32":
        return _Crc(zlib.crc32, 4)
    if algorithm in ("crc32c", "crc64nvme"):
        # imported at the first use: loading awscrt costs ~30 ms of CPU, which every
        # `pocket migrate copy` paid at start whether or not an object carried such a checksum
        from awscrt import checksums as crt
        return _Crc(crt.crc32c, 4) if algorithm == "crc32c" else _Crc(crt.crc64nvme, 8)
    return hashlib.new(algorithm)


class BodyDigests:
    def __init__(self, headers, declared_length: int | None, payload_sha256: str | None,
                 trailer: str | None = None):
        """`trailer` is the x-amz-trailer header of a *-TRAILER upload (None otherwise):
        the checksums it names are computed now and compared with the values the
        body's trailer block brings (see `receive_trailer`)."""
        self.declared_length = declared_length
        self._md5 = hashlib.md5()
        self._want_md5 = _content_md5(headers.get("Content-MD5"))
        self._sha256 = hashlib.sha256() if payload_sha256 else None
        self._want_sha256 = payload_sha256
        self._checksums = {}
        for algo in CHECKSUM_ALGORITHMS:
            value = headers.get(f"x-amz-checksum-{algo}")
            if value is not None:
                self._checksums[algo] = (_checksum_value(algo, value), new_checksum(algo))
        declared = headers.get("x-amz-sdk-checksum-algorithm", "").lower()
        if declared and declared not in CHECKSUM_ALGORITHMS:
            raise errors.InvalidRequest(f"Checksum algorithm {declared!r} is not supported; "
                                        f"use one of {', '.join(CHECKSUM_ALGORITHMS)}")
        self._trailer_names: set[str] = set()
        for name in (n.strip().lower() for n in (trailer or "").split(",")):
            if not name:
                continue
            algo = name[len("x-amz-checksum-"):] if name.startswith("x-amz-checksum-") else ""
            if algo not in CHECKSUM_ALGORITHMS:
                raise errors.InvalidRequest(f"x-amz-trailer names {name!r}; only x-amz-checksum-"
                                            f"{{{','.join(CHECKSUM_ALGORITHMS)}}} may be sent as trailers")
            if algo in self._checksums:
                raise errors.InvalidRequest(f"{name} is sent both as a header and as a trailer.")
            self._checksums[algo] = (None, new_checksum(algo))
            self._trailer_names.add(name)
        if len(self._checksums) > 1:
            raise errors.InvalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
        self._computed: dict[str, object] = {}

    def declared(self) -> set[str]:
        """The checksum algorithms the client declared (as a header or a trailer)."""
        return set(self._checksums)

    def compute(self, algorithm: str) -> None:
        """Also compute `algorithm` over the body and keep it, with nothing to compare it to
        (UploadPartCopy into an upload that declared a checksum: the data comes from us)."""
        if algorithm not in self._checksums:
            self._computed[algorithm] = new_checksum(algorithm)

    def receive_trailer(self, name: str, value: str) -> None:
        """A trailer of the body arrived: it must be one x-amz-trailer announced."""
        name = name.lower()
        if name not in self._trailer_names:
            raise errors.MalformedTrailerError(f"The trailer {name!r} was not declared in x-amz-trailer.")
        algo = name[len("x-amz-checksum-"):]
        want, h = self._checksums[algo]
        if want is not None:
            raise errors.MalformedTrailerError(f"The trailer {name!r} was sent twice.")
        self._checksums[algo] = (_checksum_value(algo, value, errors.MalformedTrailerError), h)

    def update(self, data: bytes) -> None:
        self._md5.update(data)
        if self._sha256:
            self._sha256.update(data)
        for _want, h in self._checksums.values():
            h.update(data)
        for h in self._computed.values():
            h.update(data)

    def finish(self, size: int) -> dict:
        """Check the body against every declaration; returns what the record keeps."""
        if self.declared_length is not None and size != self.declared_length:
            raise errors.IncompleteBody(
                f"Content-Length said {self.declared_length} bytes but {size} arrived")
        md5 = self._md5.digest()
        if self._want_md5 is not None and md5 != self._want_md5:
            raise errors.BadDigest("The Content-MD5 you specified did not match what we received.")
        if self._sha256 and self._sha256.hexdigest() != self._want_sha256:
            raise errors.XAmzContentSHA256Mismatch(
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ClientComputedContentSHA256=self._want_sha256,
                S3ComputedContentSHA256=self._sha256.hexdigest())
        kept = {}
        for algo, (want, h) in self._checksums.items():
            if want is None:
                raise errors.MalformedTrailerError(
                    f"x-amz-trailer declared x-amz-checksum-{algo} but the body carried no such trailer.")
            got = h.digest()
            if got != want:
                raise errors.BadDigest(f"The {algo.upper()} you specified did not match the calculated checksum.")
            kept[algo] = base64.b64encode(got).decode()
        kept.update({algo: base64.b64encode(h.digest()).decode() for algo, h in self._computed.items()})
        return {"etag": md5.hex(), "checksums": kept}


def _content_md5(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise errors.InvalidDigest("The Content-MD5 you specified is not valid.")
    return raw


def _checksum_value(algo: str, value: str, error=errors.InvalidRequest) -> bytes:
    """The declared checksum's bytes. Base64 of the wrong length is a digest that cannot
    match (BadDigest, as S3 answers a wrong SHA-256); text that is not base64 at all is
    `error`."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = None
    want = _CRC_BYTES.get(algo) or hashlib.new(algo).digest_size
    if raw and len(raw) != want and error is errors.InvalidRequest:
        raise errors.BadDigest(f"The {algo.upper()} you specified is {len(raw)} bytes; a {algo.upper()} is "
                               f"{want} bytes, so it cannot match the body.")
    if raw is None or len(raw) != want:
        raise error(f"Value for x-amz-checksum-{algo} header is invalid.")
    return raw
