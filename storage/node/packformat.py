"""The pack file format, in one place (as storage/layout.py is for archives).

A pack holds many small archives and records of one disk, appended one after another;
it describes itself, so a disk's packs can be scanned with no other state. Version 3,
little-endian:

    pack   = header record*
    header = "PKPK" | u16 version | u16 flags | u64 sequence | u64 salt | u64 reserved
             | u64 sum of the 32 bytes before it                                    40 bytes
    record = "PKRC" | u8 kind | u8 name length | u16 flags | u64 payload length
             | u64 sum of the payload | name, NUL-padded to 40 bytes
             | u64 sum of the 64 bytes before it, seeded with the pack's salt       72 bytes
             , payload

The sums are the version's: version 3 packs use keyed BLAKE3 and version 2 packs
HMAC-SHA256, both keyed with the cluster secret (integrity.mac64), so a pack or record
forged on the disk reads as corrupt; version 1 packs, written before keyed checksums,
used xxh3. All three are read. New packs are always version 3; compaction rewrites a
version 1 pack's live records into one (a version 2 pack is keyed, and is left as is).

Kinds: archive (payload: the archive exactly as put_archive received it, so the archive
format and its own checksums are unchanged), record (a tombstone or bucket event), and
delete (no payload: the named archive is gone). The newest record of a name wins: later
in a pack, or in a pack with a higher sequence number.

The salt ties headers to their pack: bytes inside an archive that look like a record
header (anyone may upload a pack file as an object) fail the header check, so a scan can
safely resynchronise after a damaged region by searching for the next valid header.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field

import xxhash

from .. import integrity

ARCHIVE_NAME = re.compile(r"[0-9a-f]{32}\.[0-9]{1,3}")
RECORD_NAME = re.compile(r"[0-9a-f]{32}")

PACK_VERSION = 3
LEGACY_PACK_VERSION = 1
PACK_VERSIONS = (LEGACY_PACK_VERSION, integrity.MAC_V2, PACK_VERSION)
PACK_MAGIC, RECORD_MAGIC = b"PKPK", b"PKRC"
_PACK = struct.Struct("<4sHHQQQ")
PACK_HEADER_SIZE = _PACK.size + 8
_REC = struct.Struct("<4sBBHQQ40s")
RECORD_HEADER_SIZE = _REC.size + 8
ARCHIVE, RECORD, DELETE = 1, 2, 3
_NAMES = {ARCHIVE: ARCHIVE_NAME, RECORD: RECORD_NAME, DELETE: ARCHIVE_NAME}
SUFFIX = ".pack"


class CorruptPack(Exception):
    """A pack header failed its checks; the pack's records cannot be trusted."""


def payload_sum(payload: bytes, fmt: int = PACK_VERSION, seed: int = 0) -> int:
    """The sum a pack of version `fmt` keeps (see the module doc)."""
    if fmt == LEGACY_PACK_VERSION:
        return xxhash.xxh3_64_intdigest(payload, seed=seed)
    return integrity.mac64(payload, seed, fmt)


def pack_header(seq: int, salt: int) -> bytes:
    body = _PACK.pack(PACK_MAGIC, PACK_VERSION, 0, seq, salt, 0)
    return body + struct.pack("<Q", payload_sum(body))


def parse_pack_header(raw: bytes) -> tuple[int, int, int]:
    """(sequence, salt, version) of a pack, or CorruptPack."""
    if len(raw) < PACK_HEADER_SIZE:
        raise CorruptPack("pack shorter than its header")
    body, (want,) = raw[:_PACK.size], struct.unpack_from("<Q", raw, _PACK.size)
    magic, version, _flags, seq, salt, _ = _PACK.unpack(body)
    if version not in PACK_VERSIONS:
        raise CorruptPack(f"unsupported pack format version {version}")
    if payload_sum(body, version) != want:
        raise CorruptPack("pack header checksum mismatch (rot, or written without the cluster secret)")
    if magic != PACK_MAGIC:
        raise CorruptPack("not a Pocket pack (bad magic)")
    return seq, salt, version


def record_header(kind: int, name: str, length: int, psum: int, salt: int) -> bytes:
    raw = name.encode()
    body = _REC.pack(RECORD_MAGIC, kind, len(raw), 0, length, psum, raw)
    return body + struct.pack("<Q", payload_sum(body, seed=salt))


def parse_record_header(raw: bytes, salt: int, fmt: int = PACK_VERSION) -> tuple[int, str, int, int] | None:
    """(kind, name, payload length, payload sum), or None unless the header is whole and valid."""
    if len(raw) < RECORD_HEADER_SIZE or raw[:4] != RECORD_MAGIC:
        return None
    body, (want,) = raw[:_REC.size], struct.unpack_from("<Q", raw, _REC.size)
    if payload_sum(body, fmt, salt) != want:
        return None
    _magic, kind, name_len, _flags, length, psum, name = _REC.unpack(body)
    if kind not in _NAMES or name_len > len(name) or (kind == DELETE and length):
        return None
    name = name[:name_len].decode("ascii", "replace")
    return (kind, name, length, psum) if _NAMES[kind].fullmatch(name) else None


@dataclass
class Entry:
    kind: int
    name: str
    offset: int   # of the record header; the payload follows it
    length: int   # of the payload
    psum: int


@dataclass
class PackScan:
    seq: int
    salt: int
    entries: list[Entry]
    end: int                       # end of the last valid record
    size: int                      # file size
    fmt: int = PACK_VERSION
    damaged: list[tuple[int, int]] = field(default_factory=list)  # byte ranges skipped


def scan_pack(path: str, verify_tail: bool = False, start: int = PACK_HEADER_SIZE) -> PackScan:
    """Read a pack's record headers, skipping over payloads and over damaged regions.

    With `verify_tail`, trailing records whose payloads fail their checksum are left
    out of `entries` and `end` (a torn last batch). `start`: where a record begins,
    the end of an earlier scan (a reader following another process's appends)."""
    with open(path, "rb", buffering=1 << 16) as f:
        size = os.fstat(f.fileno()).st_size
        seq, salt, fmt = parse_pack_header(f.read(PACK_HEADER_SIZE))
        entries, damaged = [], []
        pos = end = max(start, PACK_HEADER_SIZE)
        while pos + RECORD_HEADER_SIZE <= size:
            f.seek(pos)
            rec = parse_record_header(f.read(RECORD_HEADER_SIZE), salt, fmt)
            if rec is None or pos + RECORD_HEADER_SIZE + rec[2] > size:
                nxt = _resync(f, pos + 1, size, salt, fmt)
                if nxt is None:
                    break
                damaged.append((pos, nxt))
                pos = nxt
                continue
            entries.append(Entry(rec[0], rec[1], pos, rec[2], rec[3]))
            pos = end = pos + RECORD_HEADER_SIZE + rec[2]
        while verify_tail and entries and entries[-1].length:
            last = entries[-1]
            f.seek(last.offset + RECORD_HEADER_SIZE)
            if payload_sum(f.read(last.length), fmt) == last.psum:
                break
            entries.pop()
            end = last.offset
    return PackScan(seq, salt, entries, end, size, fmt, damaged)


def _resync(f, start: int, size: int, salt: int, fmt: int) -> int | None:
    """Offset of the next valid record header at or after `start`, if any."""
    window = 1 << 20
    while start + RECORD_HEADER_SIZE <= size:
        f.seek(start)
        buf = f.read(window + RECORD_HEADER_SIZE)
        i = buf.find(RECORD_MAGIC)
        while 0 <= i < window:
            rec = parse_record_header(buf[i:i + RECORD_HEADER_SIZE], salt, fmt)
            if rec is not None and start + i + RECORD_HEADER_SIZE + rec[2] <= size:
                return start + i
            i = buf.find(RECORD_MAGIC, i + 1)
        start += window
    return None


def pack_files(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX)) if os.path.isdir(folder) else []


def live_archives(folder: str) -> dict[str, tuple[str, int, int]]:
    """Read-only: name -> (pack path, payload offset, length) of every packed archive.

    For tools and tests that look at a disk another process is writing to: nothing is
    truncated or repaired, and an incomplete last record is simply not listed."""
    found: dict[str, tuple[str, int, int]] = {}
    for name in pack_files(folder):
        path = os.path.join(folder, name)
        try:
            scan = scan_pack(path)
        except (CorruptPack, FileNotFoundError):
            continue
        for e in scan.entries:
            if e.kind == ARCHIVE:
                found[e.name] = (path, e.offset + RECORD_HEADER_SIZE, e.length)
            elif e.kind == DELETE:
                found.pop(e.name, None)
    return found



def seq_of(fname: str) -> int:
    try:
        return int(fname[:-len(SUFFIX)])
    except ValueError:
        return 0
