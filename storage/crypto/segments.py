"""Per-segment AES-256-GCM of an object's body (server-side encryption).

Why per segment: a ranged GET decrypts only the segments it reads, and each segment's
16-byte tag proves that segment on its own. Why before erasure coding: the fragments on
the disks hold ciphertext, so scrub, repair, disk moves and `pocket index rebuild` work
on them with no key (layout.py says how the tag changes the stored sizes).

The nonce is a per-key prefix (derived from the data key) followed by the segment index,
so it is never reused: every data key seals exactly one version (a fresh random key for
SSE-S3/KMS, a key derived with a fresh random salt for SSE-C) and each index once. The
associated data binds the version id and the segment index, so a segment moved to
another place, or copied from another version, fails its tag.
"""
from __future__ import annotations

import hashlib
import hmac

TAG_BYTES = 16
_AD = b"pocket-sse/1"


def aead(key: bytes):
    """AES-256-GCM under `key`. cryptography is imported here, at the first encrypted
    version, not with the read path: ~13 ms at the start of every command that builds
    the object services (`pocket migrate copy`, `verify --deep`, repair) and most often
    never encrypts (bench/RESULTS.md, Session 11, second round)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    return AESGCM(key)


def invalid_tag() -> type[Exception]:
    """What `aead(key).decrypt` raises for a failed tag (imported with it, see `aead`)."""
    from cryptography.exceptions import InvalidTag
    return InvalidTag


class Tampered(Exception):
    """A segment failed its GCM tag: changed on the disks by someone holding the cluster
    secret (rot fails the keyed checksum before this), or read with the wrong key."""


class SegmentCipher:
    def __init__(self, data_key: bytes, version_id: str):
        self._aead = aead(data_key)
        self._prefix = hmac.digest(data_key, b"pocket-sse/nonce", hashlib.sha256)[:4]
        self._vid = bytes.fromhex(version_id)
        self._key = data_key

    def _nonce(self, index: int) -> bytes:
        return self._prefix + index.to_bytes(8, "big")

    def _ad(self, index: int) -> bytes:
        return _AD + self._vid + index.to_bytes(8, "big")

    def seal(self, index: int, plain: bytes) -> bytes:
        return self._aead.encrypt(self._nonce(index), plain, self._ad(index))

    def open(self, index: int, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(self._nonce(index), sealed, self._ad(index))
        except invalid_tag():
            raise Tampered(f"segment {index} failed its authentication tag") from None

    def opaque_etag(self, md5_hex: str) -> str:
        """An ETag that does not give away the plaintext's MD5 (S3 does the same for SSE-C
        and SSE-KMS objects): keyed with the data key, so only the key holder could test a guess."""
        return hmac.digest(self._key, b"pocket-sse/etag" + bytes.fromhex(md5_hex), hashlib.sha256)[:16].hex()
