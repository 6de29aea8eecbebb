"""Writing one object version: segments in, fragment archives out, in parallel.

The body is cut into segments; each segment is encoded into `n` blocks and block `i`
is appended to archive `i`, which streams to disk `i` of the volume. Each archive has
a small bounded queue, so memory stays at a few segments per request whatever the
object size, and a slow disk slows the upload instead of filling memory. A disk that
fails or stalls is dropped; the upload carries on while at least `quorum` archives are
alive and fails cleanly (nothing visible, partial archives removed) below that.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from .. import layout
from ..codec import Codec
from ..cluster import Cluster

log = logging.getLogger("pocket.put")

_END = object()
_INLINE_PACK_BYTES = 64 << 10


Record = tuple[bytes, bytes | memoryview]   # (record head, payload): sent as two buffers, never joined


def pack_records(blocks: list[bytes], wanted: frozenset[int]) -> list[Record | None]:
    """The records of the blocks some archive still takes (None for the others): a repair
    writing one fragment pays one keyed checksum per segment, not n. Equal blocks (the
    copies of a replicated object) share one record head: the checksums of its three
    copies were 5 % of a small PUT's CPU (cProfile)."""
    records: list[Record | None] = []
    last_block, last_head = None, None
    for i, b in enumerate(blocks):
        if i not in wanted:
            records.append(None)
            continue
        # bytes only: equal memoryviews (EC data blocks of a zero-filled body) compare
        # element by element, as slowly as the checksum this would save
        if last_head is None or type(b) is not bytes or type(last_block) is not bytes or b != last_block:
            last_block, last_head = b, layout.record_head(b)
        records.append((last_head, b))
    return records


def record_size(record: Record) -> int:
    return len(record[0]) + len(record[1])


class Aborted(Exception):
    """The gateway gave up on this upload; the disk must not commit the archive."""


class QuorumLost(Exception):
    """Fewer than the write quorum of disks took the object."""


class NoRoom(QuorumLost):
    """The quorum was lost because disks are full, not because they are down."""


def is_full(error: str) -> bool:
    return error == FULL or "No space left" in error or "ENOSPC" in error


FULL = "disk is full"


@dataclass
class _Archive:
    index: int
    disk_id: str
    queue: asyncio.Queue
    task: asyncio.Task | None = None
    error: str = ""

    @property
    def alive(self) -> bool:
        return not self.error

    async def chunks(self, header: bytes):
        yield header
        while True:
            item = await self.queue.get()
            if item is _END:
                return
            if isinstance(item, Aborted):
                raise item
            if isinstance(item, tuple):   # a record: its head, then its payload
                yield item[0]
                yield item[1]
            else:
                yield item


@dataclass
class ArchiveWriter:
    """Fans one object version out to the disks of its volume."""
    cluster: Cluster
    codec: Codec
    volume: dict
    version_id: str
    segment_size: int
    quorum: int
    timeout: float = 10.0
    only: frozenset[int] | None = None   # write just these fragment indexes (repair); None: all
    keep_on_abort: bool = False          # repair: never delete what is at the target names
    archives: list[_Archive] = field(default_factory=list)
    aborting: bool = False

    def start(self) -> None:
        header_args = dict(version_id=self.version_id, k=self.codec.k, m=self.codec.m,
                           segment_size=self.segment_size,
                           block_size=layout.Geometry(0, self.segment_size, self.codec.k).block_size)
        for i, disk_id in enumerate(self.volume["disks"]):
            arc = _Archive(i, disk_id, asyncio.Queue(maxsize=3))
            self.archives.append(arc)
            if self.only is not None and i not in self.only:
                arc.error = "not written by this writer"
                continue
            if not self.cluster.is_up(disk_id):
                arc.error = "disk is down"
                continue
            if not self.cluster.has_room(disk_id):
                arc.error = FULL
                continue
            header = layout.ArchiveHeader(index=i, **header_args).pack()
            disk = self.cluster.disks[disk_id]
            arc.task = asyncio.ensure_future(
                disk.put_archive(layout.archive_name(self.version_id, i), arc.chunks(header)))
            arc.task.add_done_callback(lambda t, a=arc: self._finished(a, t))
        self._check_quorum()

    def _finished(self, arc: _Archive, task: asyncio.Task) -> None:
        if task.cancelled():
            arc.error = arc.error or "cancelled"
        elif task.exception() is not None and not isinstance(task.exception(), Aborted):
            arc.error = arc.error or repr(task.exception())
            if is_full(arc.error):
                self.cluster.mark_full(arc.disk_id)
            elif not self.aborting:  # a remote disk reports our own abort as a broken upload
                self.cluster.mark_down(arc.disk_id, f"write failed: {arc.error}")
        while not arc.queue.empty():  # unblock a producer waiting on a dead disk
            arc.queue.get_nowait()

    def _check_quorum(self) -> None:
        alive = sum(a.alive for a in self.archives)
        if alive < self.quorum:
            errors = "; ".join(f"disk {a.disk_id}: {a.error}" for a in self.archives if a.error)
            full = sum(is_full(a.error) for a in self.archives)
            kind = NoRoom if full and alive + full >= self.quorum else QuorumLost
            raise kind(f"only {alive} of {len(self.archives)} disks can take the object, "
                       f"need {self.quorum} ({errors})")

    async def _send_all(self, pairs) -> None:
        """Queue one item to each archive. An item that fits is queued at once; only a full
        queue is waited on (a task with the stall timeout), so the few records of a small
        object cost no task and no timer each (they were a tenth of a small copy's CPU)."""
        waits = [self._send(arc, item) for arc, item in pairs if not self._queued(arc, item)]
        if waits:
            await asyncio.gather(*waits)

    @staticmethod
    def _queued(arc: _Archive, item) -> bool:
        """True when nothing is left to do: queued now, or the archive is no longer written."""
        if not arc.alive or (arc.task and arc.task.done()):
            return True
        try:
            arc.queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            return False

    async def _send(self, arc: _Archive, item) -> None:
        """Wait for room in a queue `_send_all` found full. No second look at the archive is
        needed: one that ends meanwhile has its queue emptied by `_finished`, which lets this
        put through at once, and an item left in a finished archive's queue is never read."""
        try:
            await asyncio.wait_for(arc.queue.put(item), self.timeout)
        except TimeoutError:
            arc.error = f"disk stalled for more than {self.timeout:.0f}s"
            self.cluster.mark_down(arc.disk_id, arc.error)
            arc.task.cancel()

    def wanted(self) -> frozenset[int]:
        """The fragment indexes still being written (an archive that failed never comes back)."""
        return frozenset(a.index for a in self.archives if a.alive)

    async def write_blocks(self, blocks: list[bytes]) -> None:
        wanted = self.wanted()
        if sum(map(len, blocks)) > _INLINE_PACK_BYTES:   # keyed checksums: off the event loop
            records = await asyncio.get_running_loop().run_in_executor(None, pack_records, blocks, wanted)
        else:
            records = pack_records(blocks, wanted)
        await self.write_records(records)

    async def write_records(self, records: list[Record | None]) -> None:
        """Queue one segment's records (from `pack_records`) to their archives, in segment order."""
        await self._send_all((a, r) for a, r in zip(self.archives, records) if r is not None)
        self._check_quorum()

    async def finish(self, manifest: dict) -> list[int]:
        """Send the trailer and wait until the disks have fsync'd; returns the indexes that did."""
        trailer = layout.pack_trailer(manifest)
        await self._send_all((a, trailer) for a in self.archives)
        await self._send_all((a, _END) for a in self.archives)
        tasks = [a.task for a in self.archives if a.task]
        if tasks:
            await asyncio.wait(tasks)
        done = [a.index for a in self.archives if a.task and a.task.done() and not a.task.cancelled()
                and a.task.exception() is None]
        for a in self.archives:
            if a.index not in done and not a.error:
                a.error = "did not commit"
        if len(done) < self.quorum:
            await self.abort(f"only {len(done)} disks committed, need {self.quorum}")
            self._check_quorum()
        return done

    async def abort(self, why: str) -> None:
        """Stop every archive and delete any that a disk already committed."""
        log.info("aborting upload of version %s: %s", self.version_id, why)
        self.aborting = True
        for a in self.archives:
            if a.task and not a.task.done():
                try:
                    a.queue.put_nowait(Aborted(why))
                except asyncio.QueueFull:
                    a.task.cancel()
        tasks = [a.task for a in self.archives if a.task]
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout)
        for a in self.archives:
            if a.task and not a.task.done():
                a.task.cancel()
        if self.keep_on_abort:
            return
        # A cancelled local write may still have committed in its thread, so remove every
        # archive that was started, not only those known to have finished.
        await remove_archives(self.cluster, self.volume, self.version_id,
                              [a.index for a in self.archives if a.task])


async def remove_archives(cluster: Cluster, volume: dict, version_id: str, indexes=None, durable: bool = True) -> int:
    """Best-effort delete of a version's archives; what fails here the scrubber finds later.

    Returns how many disks could not be asked (an archive may remain on each).
    `durable=False`: the version was dropped by something durable already (Disk.delete_archive)."""
    indexes = range(len(volume["disks"])) if indexes is None else indexes

    async def one(i):
        disk_id = volume["disks"][i]
        try:
            await cluster.disks[disk_id].delete_archive(layout.archive_name(version_id, i), durable)
            return 0
        except Exception as e:
            log.warning("could not delete archive %s.%d on disk %s (%r); the scrubber will remove it",
                        version_id, i, disk_id, e)
            return 1
    return sum(await asyncio.gather(*(one(i) for i in indexes)))

