"""The disk interface: what the gateway, the repairer and the tools may ask of any disk.

A local folder (`store.DiskStore`) and a disk on another node (`client.RemoteDisk`) both
implement it, so the object layer neither knows nor cares where a fragment goes. Writing
it down keeps the two from drifting apart: tests/unit/test_contracts.py checks both
against this class, method by method.
"""
from __future__ import annotations

from typing import AsyncIterable, AsyncIterator, Protocol


class Disk(Protocol):
    disk_id: str

    async def put_archive(self, name: str, chunks: AsyncIterable[bytes]) -> int:
        """Stream an archive in; durable (fsync'd) when this returns its size."""

    async def put_record(self, rec_id: str, data: bytes) -> None:
        """A small record (tombstone, bucket event), durable when this returns."""

    async def delete_archive(self, name: str, durable: bool = True) -> bool:
        """False when there was nothing to delete. `durable=False`: the caller needs no fsync
        of its own for it (a version a durable record already dropped: packs.PackSet.delete)."""

    async def read(self, name: str, offset: int, length: int) -> bytes:
        """Raw archive bytes; the caller checks them against the archive's checksums."""

    async def stat(self, name: str) -> int | None:
        """The archive's size, None when the disk does not hold it."""

    async def read_manifest(self, name: str) -> dict:
        """The manifest in the archive's trailer, checksum verified."""

    def iter_archives(self) -> AsyncIterator[tuple[str, int]]:
        """(name, size) of every archive, by name."""

    def iter_records(self) -> AsyncIterator[tuple[str, bytes]]:
        """(record id, data) of every record."""

    async def scrub_state(self) -> dict:
        """Progress and findings of the disk's own scrubber."""

    async def scrub_request(self, rate: int | None = None) -> int:
        """Start a full scrub pass now; returns its number."""

    async def health(self) -> dict:
        """Usage (`total`, `used`, `free`, packs); raises when the disk does not answer."""
