"""Reading one object version: k fragments in parallel, verified, decoded only if needed.

Segments are read in windows (a few MiB of data per window, one ranged read per archive)
and the next window is fetched while the current one is sent to the client. Data
fragments are preferred because they need no decoding. When a record is missing or
fails its checksum, a parity fragment is read for that window instead and the damage is
reported so it can be repaired.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import AsyncIterator

from .. import layout
from ..codec import Codec
from ..cluster import Cluster
from .contracts import VersionRecord
from .fragment_streams import FragmentStreams

log = logging.getLogger("pocket.get")

WINDOW_BYTES = 4 << 20
_INLINE_CHECK_BYTES = 64 << 10


class Unreadable(Exception):
    """Fewer than k good fragments of some segment could be found."""


@dataclass
class Damage:
    """What a read found wrong, for the repair queue."""
    version_id: str
    index: int
    disk_id: str
    reason: str
    record: VersionRecord | None = field(default=None, repr=False)  # the object version, for the repair queue

    @property
    def kind(self) -> str:
        """"missing" (no archive, or its disk did not answer) or "corrupt" (failed a check)."""
        return "missing" if self.reason == "missing" or self.reason.startswith("unreadable") else "corrupt"


@dataclass
class ArchiveReader:
    cluster: Cluster
    codec: Codec
    record: VersionRecord  # the object's index record (manifest)
    volume: dict
    avoid: frozenset[int] = frozenset()   # fragments to read only as a last resort (being rebuilt)
    # whole archives already read and checked record by record (verify_archive), by fragment index
    held: dict[int, bytes] = field(default_factory=dict)
    # archives mapped in memory (local disks, `migrate verify --deep`): sliced, not read; still checked
    mapped: dict[int, memoryview] = field(default_factory=dict)
    window_bytes: int = WINDOW_BYTES   # segment bytes per window (repair reads larger ones)
    damage: list[Damage] = field(default_factory=list)
    _broken: set[int] = field(default_factory=set)
    _streams: FragmentStreams = field(default_factory=FragmentStreams)
    _end: int = 0     # archive offset where the records of the current read end

    def __post_init__(self) -> None:
        self._broken |= set(self.avoid)

    @property
    def geometry(self) -> layout.Geometry:
        return layout.geometry(self.record, self.codec.k)

    async def segments(self, first: int, last: int) -> AsyncIterator[bytes]:
        """Yield the bytes of segments first..last, reading one window ahead."""
        async for segment in self._ahead(first, last, self._segments):
            yield segment

    async def blocks(self, first: int, last: int) -> AsyncIterator[dict[int, bytes]]:
        """Yield k verified blocks of each segment first..last, {fragment index: block},
        undecoded (repair rebuilds the fragments it needs from them, Codec.rebuild)."""
        async for blocks in self._ahead(first, last, self._fetch):
            yield blocks

    async def _ahead(self, first: int, last: int, window) -> AsyncIterator:
        """Items of `window(a, b)` over windows of segments, the next window read while
        the current one is consumed."""
        per_window = max(1, self.window_bytes // self.record["segment_size"])
        windows = [(s, min(s + per_window, last + 1) - 1) for s in range(first, last + 1, per_window)]
        self._end = sum(self.geometry.span(first, last))
        pending = None
        try:
            for n, (a, b) in enumerate(windows):
                current = pending or asyncio.ensure_future(window(a, b))
                pending = asyncio.ensure_future(window(*windows[n + 1])) if n + 1 < len(windows) else None
                try:
                    for item in await current:
                        yield item
                except BaseException:
                    if pending:
                        pending.cancel()
                    raise
        finally:
            self.close()

    def close(self) -> None:
        """Close the fragment streams a read left open (fragment_streams.py)."""
        self._streams.close()

    async def _segments(self, first: int, last: int) -> list[bytes]:
        """The window's segments; those missing a data fragment are decoded in parallel
        threads (zfec releases the GIL), so a degraded read uses every core."""
        geo = self.geometry
        got = await self._fetch(first, last)
        loop = asyncio.get_running_loop()
        out: list = []
        for j, blocks in enumerate(got):
            length = geo.segment_length(first + j)
            if all(i in blocks for i in range(self.codec.k)):
                out.append(self.codec.decode(blocks, length))   # a join: no decoding
            else:
                out.append(loop.run_in_executor(None, self.codec.decode, blocks, length))
        return [await x if isinstance(x, asyncio.Future) else x for x in out]

    async def _fetch(self, first: int, last: int) -> list[dict[int, bytes]]:
        """k verified blocks of each segment of the window, data fragments preferred."""
        geo = self.geometry
        count = last - first + 1
        got: list[dict[int, bytes]] = [{} for _ in range(count)]
        order = self._preferred_order()
        tried: set[int] = set()
        while True:
            short = [j for j in range(count) if len(got[j]) < self.codec.k]
            if not short:
                return got
            need = self.codec.k - min(len(got[j]) for j in short)
            batch = [i for i in order if i not in tried][:need]
            if not batch:
                raise Unreadable(
                    f"object {self.record['bucket']}/{self.record['key']} version {self.record['version_id']}: "
                    f"fewer than {self.codec.k} good fragments for segments {first}-{last}; "
                    f"problems: {[(d.index, d.disk_id, d.reason) for d in self.damage]}")
            tried.update(batch)
            results = await asyncio.gather(*(self._read_records(i, first, last, geo) for i in batch))
            for i, records in zip(batch, results):
                for j, payload in enumerate(records):
                    if payload is not None and len(got[j]) < self.codec.k:
                        got[j][i] = payload

    def _preferred_order(self) -> list[int]:
        """Data fragments first, then parity; fragments on down disks or known broken last."""
        disks = self.volume["disks"]
        return sorted(range(self.codec.n),
                      key=lambda i: (i in self._broken, not self.cluster.is_up(disks[i]), i >= self.codec.k, i))

    async def _read_records(self, i: int, first: int, last: int, geo: layout.Geometry) -> list[bytes | None]:
        disk_id = self.volume["disks"][i]
        name = layout.archive_name(self.record["version_id"], i)
        offset, length = geo.span(first, last)
        count = last - first + 1
        held = self.held.get(i)
        if held is not None:   # checked when it was read: a second pass over its checksums proves nothing
            return payload_views(memoryview(held)[offset:offset + length], first, last, geo)
        try:
            raw = self.mapped[i][offset:offset + length] if i in self.mapped else \
                await self._streams.read(i, self.cluster.disks[disk_id], name, offset, length, self._end)
        except Exception as e:  # missing archive, dead node, timeout: all mean "use another"
            reason = "missing" if isinstance(e, FileNotFoundError) else f"unreadable: {e!r}"
            if not isinstance(e, FileNotFoundError):
                self.cluster.mark_down(disk_id, reason)
            self._report(i, disk_id, reason)
            return [None] * count
        accept = layout.accepted(self.record)
        if len(raw) > _INLINE_CHECK_BYTES:   # keyed checksums cost ~1.5 ms per MiB: off the event loop
            checked = await asyncio.get_running_loop().run_in_executor(None, _check, raw, first, last, geo, accept)
        else:
            checked = _check(raw, first, last, geo, accept)
        for j, problem in checked[1]:
            self._report(i, disk_id, f"segment {j}: {problem}")
        return checked[0]

    def _report(self, i: int, disk_id: str, reason: str) -> None:
        """Note a bad fragment once: repair rewrites a whole archive, not a segment."""
        if i in self._broken:
            return
        self._broken.add(i)
        self.damage.append(Damage(self.record["version_id"], i, disk_id, reason, self.record))
        log.warning("fragment %d of %s/%s (version %s) on disk %s: %s; reading parity instead",
                    i, self.record["bucket"], self.record["key"], self.record["version_id"], disk_id, reason)


def payload_views(raw: memoryview, first: int, last: int, geo: layout.Geometry) -> list[bytes | None]:
    """The payloads of records first..last in `raw`, already checked, as views."""
    records: list[bytes | None] = []
    pos = 0
    for j in range(first, last + 1):
        size = geo.record_length(j)
        records.append(raw[pos + layout.RECORD_OVERHEAD:pos + size])
        pos += size
    return records


def _check(raw: bytes, first: int, last: int, geo: layout.Geometry,
           accept: frozenset[int]) -> tuple[list[bytes | None], list[tuple[int, str]]]:
    """The verified payloads of records first..last in `raw` (None where one failed), and the failures.

    Payloads are views into `raw`, not copies: a window is a few MiB per fragment, and
    the decoder and the join read views as they read bytes."""
    records: list[bytes | None] = []
    problems = []
    pos = 0
    view = memoryview(raw)
    for j in range(first, last + 1):
        size = geo.record_length(j)
        try:
            records.append(layout.unpack_record(view[pos:pos + size], accept))
        except layout.CorruptFragment as e:
            records.append(None)
            problems.append((j, str(e)))
        pos += size
    return records, problems
