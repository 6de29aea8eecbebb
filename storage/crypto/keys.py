"""The keys of server-side encryption: what a version's record keeps, and what it never does.

- SSE-S3 (`AES256`) and SSE-KMS (`aws:kms`): each version gets a fresh random data key,
  kept in its record only wrapped (AES-256-GCM) by the key-encryption key (the master key
  from the config or its key file) or by a named KMS key from the config. The wrapping
  binds the mode, the key id and the encryption context, so a wrapped key cannot be
  replayed under another. The record goes to every archive's trailer, so an index
  rebuild from the disks keeps it.
- SSE-C: the customer's key is never stored. The data key is derived from it with a
  random per-version salt; the record keeps the salt and an HMAC of the key under a
  key derived from the cluster secret, so the next request's key can be checked (a
  wrong one is refused before any byte is read) without anything on the disks that
  would let someone test guesses offline faster than HMAC allows.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass

from .. import integrity
from .segments import SegmentCipher, aead, invalid_tag

log = logging.getLogger("pocket.crypto")

SSE_C, SSE_S3, SSE_KMS = "SSE-C", "AES256", "aws:kms"
KEY_BYTES = 32
MASTER_ID = "pocket-master"   # the KMS key id of the master key (aws:kms without a key id)


class KeyUnavailable(Exception):
    """No key to seal or open with: no master key configured, an unknown KMS key id, or a
    wrapped key that does not open (a different master key than the one that wrapped it)."""


@dataclass(frozen=True)
class Sealing:
    """How a new version is to be encrypted, as the request (or bucket default) asked."""
    mode: str
    customer_key: bytes | None = None   # SSE-C only; never stored
    kms_key_id: str = ""                # SSE-KMS: a configured key name ("" = the master key)
    context: str = ""                   # SSE-KMS encryption context, canonical JSON
    bucket_key: bool = False

    def summary(self, keyring: "Keyring") -> dict:
        """What the records of the object (and a multipart upload) say about its encryption."""
        out: dict = {"mode": self.mode}
        if self.mode == SSE_C:
            out["key_mac"] = keyring.customer_key_mac(self.customer_key)
        if self.mode == SSE_KMS:
            out["kid"] = self.kms_key_id or MASTER_ID
            if self.context:
                out["context"] = self.context
        if self.bucket_key:
            out["bucket_key"] = True
        return out


def decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{where} must be the base64 of {KEY_BYTES} random bytes "
                         "(e.g. `head -c 32 /dev/urandom | base64`)")
    return key


def write_key_file(path: str) -> None:
    """A new random master key, base64, mode 0600 (`pocket up`); an existing file is kept."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
        f.flush()
        os.fsync(f.fileno())


class Keyring:
    def __init__(self, master: bytes | None, kms: dict[str, bytes], cluster_secret: str):
        self.master, self.kms = master, kms
        self._mac_key = integrity.derive(cluster_secret, "sse-c-key-check/v1")

    @classmethod
    def from_settings(cls, master_key: str, key_file: str, kms_keys: list[str], cluster_secret: str) -> "Keyring":
        """Raises ValueError naming the bad setting."""
        master = None
        if master_key:
            master = decode_key(master_key, "encryption.master_key")
        elif key_file and os.path.exists(key_file):
            with open(key_file) as f:
                master = decode_key(f.read(), f"encryption key file {key_file}")
        kms = {}
        for entry in kms_keys:
            name, sep, value = entry.partition(":")
            if not sep or not name:
                raise ValueError(f"encryption.kms_keys entry {name!r} must look like name:<base64 of 32 bytes>")
            kms[name] = decode_key(value, f"encryption.kms_keys[{name}]")
        return cls(master, kms, cluster_secret)

    # SSE-C -----------------------------------------------------------------------------
    def customer_key_mac(self, key: bytes) -> str:
        return base64.b64encode(hmac.digest(self._mac_key, key, hashlib.sha256)).decode()

    def customer_key_matches(self, sse: dict, key: bytes) -> bool:
        return hmac.compare_digest(sse.get("key_mac", ""), self.customer_key_mac(key))

    # KMS key ids -----------------------------------------------------------------------
    def kms_key_name(self, given: str) -> str:
        """The configured key a client's key id names: its name, `alias/<name>` or an ARN
        ending in `key/<name>` or `alias/<name>`. Raises KeyUnavailable."""
        name = given.rsplit("/", 1)[-1] if given.startswith(("arn:", "alias/")) else given
        if name in ("", MASTER_ID, "aws/s3"):
            if self.master is None:
                raise KeyUnavailable("no master key is configured (encryption.master_key or its key file)")
            return ""
        if name not in self.kms:
            raise KeyUnavailable(f"no KMS key {given!r} is configured (encryption.kms_keys)")
        return name

    def _wrapping_key(self, kid: str) -> bytes:
        key = self.master if kid in ("", MASTER_ID) else self.kms.get(kid)
        if key is None:
            raise KeyUnavailable(f"the key {kid or MASTER_ID!r} that wrapped this object's data key is not "
                                 "configured; restore it in the config (encryption.master_key, its key file, "
                                 "or encryption.kms_keys)")
        return key

    # data keys -------------------------------------------------------------------------
    def seal(self, sealing: Sealing, version_id: str) -> tuple[SegmentCipher, dict]:
        """The cipher for a new version and the `sse` field its record keeps."""
        sse = sealing.summary(self)
        if sealing.mode == SSE_C:
            salt = secrets.token_bytes(16)
            sse["salt"] = base64.b64encode(salt).decode()
            return SegmentCipher(_customer_data_key(sealing.customer_key, salt), version_id), sse
        kid = sse.get("kid", "")
        data_key = secrets.token_bytes(KEY_BYTES)
        nonce = secrets.token_bytes(12)
        wrapped = aead(self._wrapping_key(kid)).encrypt(nonce, data_key, _wrap_ad(sse))
        sse["wrapped"] = base64.b64encode(nonce + wrapped).decode()
        return SegmentCipher(data_key, version_id), sse

    def opener(self, sse: dict, version_id: str, customer_key: bytes | None) -> SegmentCipher:
        """The cipher that opens a stored version (its record's `sse`)."""
        if sse["mode"] == SSE_C:
            if customer_key is None or not self.customer_key_matches(sse, customer_key):
                raise KeyUnavailable("this object is encrypted with a customer key; the request did not give it")
            return SegmentCipher(_customer_data_key(customer_key, base64.b64decode(sse["salt"])), version_id)
        raw = base64.b64decode(sse["wrapped"])
        try:
            data_key = aead(self._wrapping_key(sse.get("kid", ""))).decrypt(raw[:12], raw[12:], _wrap_ad(sse))
        except invalid_tag():
            raise KeyUnavailable(f"the data key of version {version_id} does not open with the configured "
                                 f"key {sse.get('kid') or MASTER_ID!r}: the key was changed since it was "
                                 "written; restore the old one") from None
        return SegmentCipher(data_key, version_id)


def _customer_data_key(customer_key: bytes, salt: bytes) -> bytes:
    return hmac.digest(customer_key, b"pocket-sse-c/data-key" + salt, hashlib.sha256)


def _wrap_ad(sse: dict) -> bytes:
    return json.dumps({"mode": sse["mode"], "kid": sse.get("kid", ""), "context": sse.get("context", "")},
                      sort_keys=True).encode()
