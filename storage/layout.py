"""The on-disk fragment archive format, in one place (Tahoe-LAFS's layout.py model).

A fragment archive holds fragment `i` of every segment of one object version:

    header   | record 0 | record 1 | ... | record s-1 | trailer | footer

- header (64 bytes): magic, format version, version id, fragment index, k, m, segment
  size, block size, and a checksum of the header itself.
- record: u32 payload length, u64 checksum of the payload, payload. Every record but the
  last has the same size, so the offset of segment `j` is computed, never searched.
- trailer: the object's manifest (JSON), so a disk describes itself and the index can
  be rebuilt from disks alone.
- footer (16 bytes): u32 trailer length, u64 checksum of the trailer, magic. A node only
  commits an archive whose footer is intact, which is how a truncated upload is caught.

The checksum is what the format version says: format 1 (before keyed checksums) used
xxh3-64, which anyone can compute; formats 2 and 3 use a MAC keyed with the cluster
secret (integrity.py: HMAC-SHA256 in 2, keyed BLAKE3 in 3, which costs a fifth), so a
forged archive reads as corrupt. Sizes and offsets are the same in all three. Writers
always write format 3. Readers say which formats they accept: an object whose record
names a keyed format (`"archive_format": 2` or 3) accepts only keyed archives, so a
forger cannot pass a format-1 copy off as legacy; objects written before keyed checksums
accept all three. Repair rewrites lost fragments in the current format, so one object's
archives may mix formats 2 and 3: each archive's header says which it is.

Upload, download, scrub and rebuild all import this module instead of computing
offsets themselves.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import orjson
import xxhash

from . import integrity

FORMAT_VERSION = 3
LEGACY_FORMAT = 1
STRICT = frozenset({integrity.MAC_V2, FORMAT_VERSION})      # keyed formats only
ANY_FORMAT = frozenset({LEGACY_FORMAT, *STRICT})
HEADER_MAGIC = b"PKFA"
FOOTER_MAGIC = b"PKFE"
_HEADER = struct.Struct("<4sHH16sHBBII")  # magic, version, flags, vid, index, k, m, seg, block
HEADER_SIZE = 64
_RECORD = struct.Struct("<IQ")
RECORD_OVERHEAD = _RECORD.size
_FOOTER = struct.Struct("<IQ4s")
FOOTER_SIZE = _FOOTER.size


class CorruptFragment(Exception):
    """A header, record or footer failed its checksum or structure check."""


def checksum(data: bytes, fmt: int = FORMAT_VERSION) -> int:
    return xxhash.xxh3_64_intdigest(data) if fmt == LEGACY_FORMAT else integrity.mac64(data, fmt=fmt)


def accepted(record: dict) -> frozenset[int]:
    """The archive formats a read of this object version may accept (see the module doc)."""
    return STRICT if record.get("archive_format", LEGACY_FORMAT) > LEGACY_FORMAT else ANY_FORMAT


def _matches(data: bytes, want: int, accept: frozenset[int]) -> bool:
    """Newest format first: that is what nearly every record is, and the cheapest MAC."""
    return any(checksum(data, fmt) == want for fmt in sorted(accept, reverse=True))


@dataclass(frozen=True)
class ArchiveHeader:
    version_id: str  # 32 hex chars
    index: int
    k: int
    m: int
    segment_size: int
    block_size: int
    fmt: int = FORMAT_VERSION

    def pack(self) -> bytes:
        body = _HEADER.pack(HEADER_MAGIC, self.fmt, 0, bytes.fromhex(self.version_id),
                            self.index, self.k, self.m, self.segment_size, self.block_size)
        body = body.ljust(HEADER_SIZE - 8, b"\0")
        return body + struct.pack("<Q", checksum(body, self.fmt))

    @classmethod
    def unpack(cls, raw: bytes, accept: frozenset[int] = STRICT) -> "ArchiveHeader":
        """The header, checked with the checksum of the format it names, if `accept` has it."""
        if len(raw) < HEADER_SIZE:
            raise CorruptFragment("archive shorter than its header")
        body, (want,) = raw[:HEADER_SIZE - 8], struct.unpack("<Q", raw[HEADER_SIZE - 8:HEADER_SIZE])
        magic, version, _flags, vid, index, k, m, seg, block = _HEADER.unpack_from(body)
        if version not in ANY_FORMAT:
            raise CorruptFragment(f"unsupported archive format version {version}")
        if version not in accept:
            raise CorruptFragment(f"archive in format {version} where only {sorted(accept)} may be "
                                  "(an unkeyed copy of a keyed archive: forged, or written by a wrong tool)")
        if checksum(body, version) != want:
            raise CorruptFragment("archive header checksum mismatch (rot, or written without the cluster secret)")
        if magic != HEADER_MAGIC:
            raise CorruptFragment("not a Pocket fragment archive (bad magic)")
        return cls(vid.hex(), index, k, m, seg, block, version)


@dataclass(frozen=True)
class Geometry:
    """Where each segment's record lies, derived from object size and policy."""
    size: int
    segment_size: int
    k: int

    @property
    def segments(self) -> int:
        return -(-self.size // self.segment_size)

    @property
    def block_size(self) -> int:
        """Block size of a full segment; only the last segment's block may be shorter."""
        return -(-self.segment_size // self.k)

    def segment_length(self, j: int) -> int:
        return min(self.segment_size, self.size - j * self.segment_size)

    def record_length(self, j: int) -> int:
        return RECORD_OVERHEAD + -(-self.segment_length(j) // self.k)

    def record_offset(self, j: int) -> int:
        return HEADER_SIZE + j * (RECORD_OVERHEAD + self.block_size)

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Byte offset and length of records first..last inclusive in an archive."""
        start = self.record_offset(first)
        return start, self.record_offset(last) + self.record_length(last) - start

    def records_end(self) -> int:
        if not self.segments:
            return HEADER_SIZE
        return self.record_offset(self.segments - 1) + self.record_length(self.segments - 1)


SEAL_BYTES = 16   # an encrypted object's segments each carry an AES-GCM tag (crypto/segments.py)


def stored_segment_size(manifest: dict) -> int:
    """Bytes of one full segment as stored: the S3 segment, plus the tag if encrypted."""
    return manifest["segment_size"] + (SEAL_BYTES if manifest.get("sse") else 0)


def stored_size(manifest: dict) -> int:
    """Bytes of the object as stored. The record's `size` stays the plaintext size S3
    reports; an encrypted object's segments are each SEAL_BYTES longer on the disks."""
    if not manifest.get("sse"):
        return manifest["size"]
    return manifest["size"] + SEAL_BYTES * -(-manifest["size"] // manifest["segment_size"])


def geometry(manifest: dict, k: int) -> Geometry:
    """Where the records of a stored version lie (encrypted or not)."""
    return Geometry(stored_size(manifest), stored_segment_size(manifest), k)


def pack_record(payload: bytes, fmt: int = FORMAT_VERSION) -> bytes:
    return record_head(payload, fmt) + payload


def record_head(payload: bytes | memoryview, fmt: int = FORMAT_VERSION) -> bytes:
    """The RECORD_OVERHEAD bytes that go before `payload` in its record. Writers send
    the two as separate buffers: joining them copied every fragment byte once more, with
    the GIL held (12 % of a 64 MiB PUT's GIL time, py-spy --gil). `fmt`: the archive's
    format (the header's); writers use the current one."""
    return _RECORD.pack(len(payload), checksum(payload, fmt))


def unpack_record_head(raw: bytes) -> tuple[int, int]:
    """(payload length, checksum) from the RECORD_OVERHEAD bytes before a payload."""
    return _RECORD.unpack(raw)


def payload_matches(pieces, want: int, fmt: int = FORMAT_VERSION) -> bool:
    """Whether a payload of a keyed archive of format `fmt`, given as the pieces it
    arrived in (never joined), has the checksum `want` of its record head."""
    return integrity.mac64_pieces(pieces, fmt=fmt) == want


def unpack_record(raw: bytes, accept: frozenset[int] = STRICT) -> bytes:
    """Return the verified payload of one record (`raw` is exactly one record) whose
    checksum is that of one of the `accept`ed formats."""
    if len(raw) < RECORD_OVERHEAD:
        raise CorruptFragment("record shorter than its header")
    length, want = _RECORD.unpack_from(raw)
    payload = raw[RECORD_OVERHEAD:]
    if length != len(payload):
        raise CorruptFragment(f"record length {length} does not match {len(payload)} bytes read")
    if not _matches(payload, want, accept):
        raise CorruptFragment("segment checksum mismatch (bit rot, torn write, or written without the "
                              "cluster secret)")
    return payload


def pack_trailer(manifest: dict, fmt: int = FORMAT_VERSION) -> bytes:
    """json.dumps was 4 % of a small PUT's gateway samples (py-spy), orjson a tenth of
    that. Readers only parse the trailer, so its exact bytes may differ between the two
    (orjson writes non-ASCII as UTF-8); a key orjson refuses (a lone surrogate) takes the
    standard library's path."""
    try:
        body = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    return body + _FOOTER.pack(len(body), checksum(body, fmt), FOOTER_MAGIC)


def unpack_footer(raw: bytes) -> tuple[int, int]:
    """Trailer length and checksum from the last FOOTER_SIZE bytes of an archive."""
    if len(raw) != FOOTER_SIZE:
        raise CorruptFragment("archive shorter than its footer")
    length, want, magic = _FOOTER.unpack(raw)
    if magic != FOOTER_MAGIC:
        raise CorruptFragment("archive footer missing (truncated or unfinished upload)")
    return length, want


def check_trailer(raw: bytes, want: int, fmt: int = FORMAT_VERSION) -> None:
    """Raise CorruptFragment unless `raw` has the checksum of format `fmt` (the header's)."""
    if checksum(raw, fmt) != want:
        raise CorruptFragment("archive trailer (manifest) checksum mismatch")


def unpack_trailer(raw: bytes, want: int, fmt: int = FORMAT_VERSION) -> dict:
    """The manifest, checked with the checksum of format `fmt` (the header's)."""
    check_trailer(raw, want, fmt)
    return json.loads(raw)


def archive_name(version_id: str, index: int) -> str:
    return f"{version_id}.{index}"
