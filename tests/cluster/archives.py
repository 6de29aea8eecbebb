"""Fragment archives on a cluster's disks: found, read and damaged where they are stored
(a file of their own, or a record in the disk's pack files), read without disturbing the
node that writes them, so probes can rot a bit or lose a fragment the way a disk would."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from storage import layout
from storage.node import packformat

if TYPE_CHECKING:
    from .harness import ProcCluster


def on_disks(disk_paths: dict[str, str]) -> set[str]:
    """Every fragment archive on these disks (id -> folder): its file's path, or
    `<disk>/packs#<name>` for a small archive stored in the disk's pack files."""
    found = set()
    for path in disk_paths.values():
        for folder, _dirs, files in os.walk(os.path.join(path, "archives")):
            found.update(os.path.join(folder, f) for f in files)
        packs_dir = os.path.join(path, "packs")
        found.update(f"{packs_dir}#{name}" for name in packformat.live_archives(packs_dir))
    return found


def archive_parts(ref: str) -> tuple[str, str]:
    """(disk id, archive name) of an `archive_files()` entry, packed or not."""
    if "#" in ref:
        packs_dir, name = ref.split("#", 1)
        return os.path.basename(os.path.dirname(packs_dir)), name
    return os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(ref)))), os.path.basename(ref)


def archive_span(ref: str) -> tuple[str, int, int]:
    """(file, offset, length) holding an archive: its own file, or its record in a pack."""
    if "#" in ref:
        packs_dir, name = ref.split("#", 1)
        span = packformat.live_archives(packs_dir).get(name)
        if span is None:     # as a file would be: a replaced or deleted version's archives go in the background
            raise FileNotFoundError(f"{ref} was deleted from its pack")
        return span
    return ref, 0, os.path.getsize(ref)


def read_archive(ref: str) -> bytes:
    path, offset, length = archive_span(ref)
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def flip_archive_bit(ref: str, at: int, bit: int = 0x10) -> None:
    """Bit rot at byte `at` of an archive, wherever the archive is stored."""
    path, offset, length = archive_span(ref)
    assert 0 <= at < length
    with open(path, "r+b") as f:
        f.seek(offset + at)
        b = f.read(1)
        f.seek(offset + at)
        f.write(bytes([b[0] ^ bit]))


def flip_payload_byte(ref: str, rng) -> None:
    """Flip one bit inside a record's payload (not its header): bit rot the checksum must catch.

    `ref` is an archive_files() entry: its own file, or a small archive inside a pack."""
    geo = _geometry(read_archive(ref))
    j = rng.randrange(geo.segments)
    at = geo.record_offset(j) + layout.RECORD_OVERHEAD + rng.randrange(geo.record_length(j) - layout.RECORD_OVERHEAD)
    flip_archive_bit(ref, at)


def flip_last_payload_byte(ref: str) -> None:
    """Flip a bit of the last payload byte of the last segment: the end a reader that stops
    early, or a check that skips the tail, would miss."""
    geo = _geometry(read_archive(ref))
    j = geo.segments - 1
    flip_archive_bit(ref, geo.record_offset(j) + geo.record_length(j) - 1)


def _geometry(raw: bytes) -> layout.Geometry:
    header = layout.ArchiveHeader.unpack(raw[:layout.HEADER_SIZE])
    length, want = layout.unpack_footer(raw[-layout.FOOTER_SIZE:])
    size = layout.unpack_trailer(raw[-layout.FOOTER_SIZE - length:-layout.FOOTER_SIZE], want)["size"]
    return layout.Geometry(size, header.segment_size, header.k)


def archives_of(c: ProcCluster, bucket: str, key: str) -> list[str]:
    """The archive_files() entries of an object's fragments (its manifest names it)."""
    found = []
    for ref in sorted(on_disks(c.disk_paths)):
        try:
            raw = read_archive(ref)
        except FileNotFoundError:      # removed meanwhile (a replaced version's archives go in the background)
            continue
        length, want = layout.unpack_footer(raw[-layout.FOOTER_SIZE:])
        manifest = layout.unpack_trailer(raw[-layout.FOOTER_SIZE - length:-layout.FOOTER_SIZE], want)
        if (manifest.get("bucket"), manifest.get("key")) == (bucket, key):
            found.append(ref)
    return found
