"""Unit tests for storage.layout: the fragment archive format."""
from __future__ import annotations

import random

import pytest

from storage import integrity, layout
from storage.codec import Codec
from storage.layout import (FOOTER_SIZE, HEADER_SIZE, RECORD_OVERHEAD, ArchiveHeader,
                            CorruptFragment, Geometry, pack_record, pack_trailer,
                            unpack_footer, unpack_record, unpack_trailer)

VID = "0123456789abcdef0123456789abcdef"


def _header(**kw) -> ArchiveHeader:
    base = dict(version_id=VID, index=5, k=4, m=2, segment_size=1 << 20, block_size=(1 << 20) // 4)
    base.update(kw)
    return ArchiveHeader(**base)


# header -------------------------------------------------------------------------------

@pytest.mark.parametrize("hdr", [
    _header(),
    _header(version_id="f" * 32, index=0, k=1, m=2, segment_size=4096, block_size=4096),
    _header(version_id="0" * 32, index=13, k=10, m=4, segment_size=(1 << 20) + 3,
            block_size=-(-((1 << 20) + 3) // 10)),
    _header(index=255, k=200, m=56, segment_size=2**32 - 1, block_size=2**32 - 1),
])
def test_header_round_trip(hdr):
    raw = hdr.pack()
    assert len(raw) == HEADER_SIZE
    assert ArchiveHeader.unpack(raw) == hdr
    # Trailing bytes (the records that follow) do not disturb parsing.
    assert ArchiveHeader.unpack(raw + b"\x01record bytes") == hdr


def test_header_any_flipped_bit_is_detected():
    raw = _header().pack()
    for pos in range(HEADER_SIZE):
        for bit in range(8):
            bad = bytearray(raw)
            bad[pos] ^= 1 << bit
            with pytest.raises(CorruptFragment):
                ArchiveHeader.unpack(bytes(bad))


@pytest.mark.parametrize("cut", [0, 1, 8, HEADER_SIZE - 1])
def test_short_header_is_detected(cut):
    with pytest.raises(CorruptFragment):
        ArchiveHeader.unpack(_header().pack()[:cut])


def test_header_with_wrong_magic_or_version_but_valid_checksum_is_refused():
    good = _header().pack()
    body = bytearray(good[:HEADER_SIZE - 8])
    for mutate in ("magic", "version"):
        b = bytearray(body)
        if mutate == "magic":
            b[0:4] = b"XXXX"
        else:
            b[4] = layout.FORMAT_VERSION + 1
        raw = bytes(b) + layout.checksum(bytes(b)).to_bytes(8, "little")
        with pytest.raises(CorruptFragment):
            ArchiveHeader.unpack(raw)


# records ------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)), random.Random(1).randbytes(100_000)])
def test_record_round_trip(payload):
    raw = pack_record(payload)
    assert len(raw) == RECORD_OVERHEAD + len(payload)
    assert unpack_record(raw) == payload


def test_record_every_flipped_byte_is_detected():
    raw = pack_record(b"hello, fragment!")
    for pos in range(len(raw)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(raw)
            bad[pos] ^= mask
            with pytest.raises(CorruptFragment):
                unpack_record(bytes(bad))


def test_truncated_or_extended_record_is_detected():
    raw = pack_record(b"0123456789" * 10)
    for cut in (0, 1, RECORD_OVERHEAD - 1, RECORD_OVERHEAD, len(raw) - 1):
        with pytest.raises(CorruptFragment):
            unpack_record(raw[:cut])
    with pytest.raises(CorruptFragment):
        unpack_record(raw + b"\0")


# trailer / footer ---------------------------------------------------------------------

MANIFEST = {"bucket": "b", "key": "dir/ключ.txt", "size": 12345, "etag": "abc",
            "meta": {"x-amz-meta-a": "1"}, "parts": [1, 2, 3]}


def _split_trailer(blob: bytes) -> dict:
    length, want = unpack_footer(blob[-FOOTER_SIZE:])
    return unpack_trailer(blob[-FOOTER_SIZE - length:-FOOTER_SIZE], want)


def test_trailer_round_trip():
    blob = pack_trailer(MANIFEST)
    assert _split_trailer(blob) == MANIFEST
    # as the tail of a larger archive
    assert _split_trailer(b"H" * 100 + blob) == MANIFEST


@pytest.mark.parametrize("key", ["caf\u00e9/\u65e5\u672c/\U0001f600 + %", "bad-\udcff-byte"])
def test_trailer_round_trip_of_any_key(key):
    """Non-ASCII keys, and a key with a lone surrogate (a byte that is not UTF-8, kept by
    surrogateescape) that orjson refuses and the standard library writes."""
    manifest = {**MANIFEST, "key": key}
    assert _split_trailer(pack_trailer(manifest)) == manifest


def test_trailer_corruption_is_detected():
    blob = pack_trailer(MANIFEST)
    body_len = len(blob) - FOOTER_SIZE
    for pos in range(body_len):
        bad = bytearray(blob)
        bad[pos] ^= 0x20
        with pytest.raises(CorruptFragment):
            _split_trailer(bytes(bad))
    # footer checksum field
    for pos in range(body_len + 4, body_len + 12):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(CorruptFragment):
            _split_trailer(bytes(bad))


def test_footer_bad_magic_reports_truncated_upload():
    blob = pack_trailer(MANIFEST)
    for pos in range(len(blob) - 4, len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(CorruptFragment, match="truncated"):
            unpack_footer(bytes(bad[-FOOTER_SIZE:]))
    # an archive cut short anywhere has no footer magic at its end
    archive = _header().pack() + pack_record(b"a" * 50) + blob
    for cut in range(1, len(blob)):
        with pytest.raises(CorruptFragment):
            unpack_footer(archive[:-cut][-FOOTER_SIZE:])


def test_footer_of_wrong_size_is_detected():
    blob = pack_trailer(MANIFEST)
    with pytest.raises(CorruptFragment):
        unpack_footer(blob[-FOOTER_SIZE + 1:])
    with pytest.raises(CorruptFragment):
        unpack_footer(b"")


def test_archive_name():
    assert layout.archive_name(VID, 3) == f"{VID}.3"


# geometry -----------------------------------------------------------------------------

def _build_archive(obj: bytes, k: int, m: int, segment_size: int, index: int):
    """A fragment archive for fragment `index`, written the way an uploader does."""
    codec = Codec(k, m)
    geo = Geometry(len(obj), segment_size, k)
    head = ArchiveHeader(VID, index, k, m, segment_size, geo.block_size).pack()
    records, payloads = [], []
    for j in range(geo.segments):
        seg = obj[j * segment_size:(j + 1) * segment_size]
        block = codec.encode(seg)[index]
        payloads.append(block)
        records.append(pack_record(block))
    manifest = {"size": len(obj), "version": VID}
    return head + b"".join(records) + pack_trailer(manifest), geo, payloads, manifest


@pytest.mark.parametrize("k,m,segment_size,size", [
    (4, 2, 1000, 3300),        # short last segment, segment divisible by k
    (4, 2, 1001, 4 * 1001 + 7),  # segment size not divisible by k, tiny last segment
    (6, 3, 4096, 3 * 4096 + 1),  # last segment of 1 byte
    (10, 4, 4096, 2 * 4096),     # exact multiple: no short segment
    (1, 2, 1000, 2500),          # replica
])
def test_geometry_points_exactly_at_each_record(k, m, segment_size, size):
    obj = random.Random(size).randbytes(size)
    archives = {}
    for index in range(k + m):
        archive, geo, payloads, manifest = _build_archive(obj, k, m, segment_size, index)
        archives[index] = (archive, payloads)
        assert geo.segments == len(payloads) == -(-size // segment_size)
        assert ArchiveHeader.unpack(archive).block_size == geo.block_size
        for j, payload in enumerate(payloads):
            off, ln = geo.record_offset(j), geo.record_length(j)
            assert ln == RECORD_OVERHEAD + len(payload)
            assert unpack_record(archive[off:off + ln]) == payload
            assert geo.span(j, j) == (off, ln)
        # multi-record spans cover exactly the records they name
        for first in range(geo.segments):
            for last in range(first, geo.segments):
                start, length = geo.span(first, last)
                blob = archive[start:start + length]
                want = b"".join(pack_record(p) for p in payloads[first:last + 1])
                assert blob == want
        # records end where the trailer begins
        end = geo.records_end()
        tl, cs = unpack_footer(archive[-FOOTER_SIZE:])
        assert end == len(archive) - FOOTER_SIZE - tl
        assert unpack_trailer(archive[end:end + tl], cs) == manifest
    # and the records decode back to the object from the parity-heavy end
    codec = Codec(k, m)
    geo = Geometry(size, segment_size, k)
    out = b""
    for j in range(geo.segments):
        blocks = {}
        for index in range(m, k + m):
            archive = archives[index][0]
            off, ln = geo.record_offset(j), geo.record_length(j)
            blocks[index] = unpack_record(archive[off:off + ln])
        out += codec.decode(blocks, geo.segment_length(j))
    assert out == obj


def test_geometry_segment_lengths_and_empty_object():
    geo = Geometry(3300, 1000, 4)
    assert [geo.segment_length(j) for j in range(geo.segments)] == [1000, 1000, 1000, 300]
    assert geo.block_size == 250
    assert [geo.record_length(j) for j in range(4)] == [RECORD_OVERHEAD + 250] * 3 + [RECORD_OVERHEAD + 75]
    empty = Geometry(0, 1000, 4)
    assert empty.segments == 0
    assert empty.records_end() == HEADER_SIZE


@pytest.mark.parametrize("fmt", [layout.LEGACY_FORMAT, 2, layout.FORMAT_VERSION])
def test_records_of_every_format_read_where_their_object_accepts_them(fmt):
    """Format 3 (keyed BLAKE3) is written; format 2 (HMAC) archives of objects written
    before it, and format 1 archives of objects from before keyed checksums, still read.
    A keyed object (archive_format 2 or 3: repair may mix them) never takes format 1."""
    payload = random.Random(fmt).randbytes(70_001)
    record = layout.pack_record(payload, fmt)
    legacy_object, keyed_2, keyed_3 = {}, {"archive_format": 2}, {"archive_format": layout.FORMAT_VERSION}
    assert layout.unpack_record(record, layout.accepted(legacy_object)) == payload
    for keyed in (keyed_2, keyed_3):
        if fmt == layout.LEGACY_FORMAT:
            with pytest.raises(layout.CorruptFragment):
                layout.unpack_record(record, layout.accepted(keyed))
        else:
            assert layout.unpack_record(record, layout.accepted(keyed)) == payload
    changed = bytearray(record)
    changed[-100] ^= 1
    with pytest.raises(layout.CorruptFragment):
        layout.unpack_record(bytes(changed), layout.ANY_FORMAT)
    hdr = layout.ArchiveHeader("ab" * 16, 2, 4, 2, 65536, 16384, fmt)
    assert layout.ArchiveHeader.unpack(hdr.pack(), layout.ANY_FORMAT) == hdr


def test_the_current_format_is_keyed_blake3():
    payload = random.Random(3).randbytes(4096)
    _, want = layout.unpack_record_head(layout.record_head(payload))
    assert layout.FORMAT_VERSION == 3 and want == integrity.mac64(payload, fmt=integrity.MAC_V3)
    assert want != layout.checksum(payload, 2) != layout.checksum(payload, layout.LEGACY_FORMAT)
