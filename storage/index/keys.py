"""Key encoding for the metadata index (every backend stores the same keys).

Why this exists: LMDB keys are limited to 511 bytes, but an S3 object key may
be up to 1024 bytes of UTF-8 and the index key also carries the bucket name.
We keep keys byte-ordered (so listings are range scans) by storing short keys
verbatim and truncating long keys to a fixed prefix plus a hash:

    index_key   = bucket_utf8 + b"\\x00" + encoded_key
    encoded_key = key_bytes                                   if len <= P
                = key_bytes[:P] + blake2b(key_bytes, 16)      otherwise

Properties the listing code relies on (P = 400):

* For two keys that do not both exceed P bytes with identical first P bytes,
  the byte order of the encoded keys equals the byte order of the full keys.
* Keys longer than P that share their first P bytes X form one contiguous
  *run* in LMDB (ordered by hash, i.e. arbitrarily); the run sorts after the
  key equal to X itself and before every other key.  Readers must buffer such
  a run and re-sort it by full key.  An encoded key is hashed iff its length
  is > P (it is then exactly P + HASH_LEN bytes).
* The full key is always stored in the value, so hashed keys are recoverable.

Bucket names never contain b"\\x00" (S3 names are [a-z0-9.-]), so the separator
makes ``bucket + b"\\x00"`` a prefix that no other bucket's keys share.
"""
from __future__ import annotations

import hashlib

PREFIX_LEN = 400  # P: bytes of the key kept verbatim
HASH_LEN = 16
MAX_KEY_BYTES = 1024  # S3 limit
MAX_BUCKET_BYTES = 63
SEP = b"\x00"
LMDB_MAX_KEY = 511

# Worst case index key must fit LMDB's limit.
assert MAX_BUCKET_BYTES + len(SEP) + PREFIX_LEN + HASH_LEN <= LMDB_MAX_KEY


def key_bytes(key: str) -> bytes:
    """UTF-8 bytes of an object key, validated against S3's limits.

    Lone surrogates raise UnicodeEncodeError: they have no UTF-8 form and so
    cannot be ordered consistently with other keys.
    """
    if not isinstance(key, str):
        raise TypeError(f"object key must be str, not {type(key).__name__}")
    b = key.encode("utf-8")
    if not b:
        raise ValueError("object key must not be empty")
    if len(b) > MAX_KEY_BYTES:
        raise ValueError(f"object key is {len(b)} bytes; max is {MAX_KEY_BYTES}")
    return b


def bucket_bytes(bucket: str) -> bytes:
    """UTF-8 bytes of a bucket name; only checks what the encoding needs."""
    if not isinstance(bucket, str):
        raise TypeError(f"bucket name must be str, not {type(bucket).__name__}")
    b = bucket.encode("utf-8")
    if not b or len(b) > MAX_BUCKET_BYTES or SEP in b:
        raise ValueError(f"invalid bucket name {bucket!r}")
    return b


def encode_key_bytes(kb: bytes) -> bytes:
    """Encode raw key bytes (no validation; used for seek targets too)."""
    if len(kb) <= PREFIX_LEN:
        return kb
    return kb[:PREFIX_LEN] + hashlib.blake2b(kb, digest_size=HASH_LEN).digest()


def encode_key(key: str) -> bytes:
    """Encoded form of an object key (without the bucket part)."""
    return encode_key_bytes(key_bytes(key))


def bucket_prefix(bucket: str) -> bytes:
    """Prefix shared by every index key of ``bucket``'s objects."""
    return bucket_bytes(bucket) + SEP


def object_index_key(bucket: str, key: str) -> bytes:
    """Full LMDB key for (bucket, key) in the ``objects`` DB."""
    return bucket_prefix(bucket) + encode_key(key)


def is_hashed(encoded: bytes) -> bool:
    """True if ``encoded`` is a truncated+hashed long key."""
    return len(encoded) > PREFIX_LEN


def split_index_key(index_key: bytes) -> tuple[str, bytes]:
    """Split an ``objects`` index key into (bucket, encoded_key)."""
    bucket, sep, enc = index_key.partition(SEP)
    if not sep:
        raise ValueError("not an object index key")
    return bucket.decode("utf-8"), enc


def decode_key(encoded: bytes) -> str | None:
    """Recover the key from its encoded form, or None if it was hashed.

    For hashed keys the full key must be read from the stored value.
    """
    if is_hashed(encoded):
        return None
    return encoded.decode("utf-8")


def seek_past_prefix(prefix: bytes) -> bytes | None:
    """Encoded seek target that sorts after every key starting with ``prefix``.

    Valid UTF-8 never contains 0xFF, so ``prefix + b"\\xff"`` is greater than
    every key extending ``prefix`` and smaller than every larger key that does
    not.  That only holds while the target stays verbatim (<= P bytes); for
    longer prefixes None is returned and callers must skip linearly (such keys
    all live in one hashed run anyway).
    """
    target = prefix + b"\xff"
    if len(target) > PREFIX_LEN:
        return None
    return target


# ---- multipart uploads (uploads.py) ---------------------------------------------------
UPLOAD_ID_LEN = 16  # raw bytes of a 32-hex-char upload id (objects.ids.new_id)
UPLOAD_SUFFIX_LEN = len(SEP) + UPLOAD_ID_LEN

assert MAX_BUCKET_BYTES + len(SEP) + PREFIX_LEN + HASH_LEN + UPLOAD_SUFFIX_LEN <= LMDB_MAX_KEY


def upload_index_key(bucket: str, key: str, upload_id: str) -> bytes:
    """`uploads` DB key: bucket \\0 encoded key \\0 upload id (16 raw bytes).

    Upload ids are time-ordered, so one key's uploads sort by initiation time, as
    ListMultipartUploads wants. The fixed-length suffix makes the split unambiguous."""
    return bucket_prefix(bucket) + encode_key(key) + SEP + bytes.fromhex(upload_id)


def part_index_key(upload_id: str, number: int) -> bytes:
    """`parts` DB key: upload id (16 raw bytes) + part number (u16 big-endian)."""
    return bytes.fromhex(upload_id) + number.to_bytes(2, "big")


# ---- object versions (versions.py) -----------------------------------------------------
VERSION_ID_LEN = 16  # raw bytes of a 32-hex-char version id (objects.ids.new_id)
VERSION_SUFFIX_LEN = len(SEP) + VERSION_ID_LEN

assert MAX_BUCKET_BYTES + len(SEP) + PREFIX_LEN + HASH_LEN + VERSION_SUFFIX_LEN <= LMDB_MAX_KEY


def inverted_id(version_id: str) -> bytes:
    """A version id's 16 bytes, each inverted, so that newer versions sort first."""
    return bytes(255 - b for b in bytes.fromhex(version_id))


def key_versions_prefix(bucket: str, key: str) -> bytes:
    """Prefix of every `versions` DB key of one object key: bucket \\0 encoded key \\0."""
    return bucket_prefix(bucket) + encode_key(key) + SEP


def version_index_key(bucket: str, key: str, version_id: str) -> bytes:
    """`versions` DB key: bucket \\0 encoded key \\0 inverted version id (newest first)."""
    return key_versions_prefix(bucket, key) + inverted_id(version_id)
