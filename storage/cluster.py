"""The gateway's view of the cluster: every disk, whether it answers, and the volumes.

Liveness comes from two sources: a heartbeat that asks every disk for its usage every
few seconds, and the data path, which marks a disk down the moment a request to it
fails. Placement prefers volumes whose disks are all up; reads skip down disks.
A heartbeat gives a silent disk `timeout` seconds (storage.node_timeout), as long as a
write waits for one: a node slowed by load answers late, and marking it down after two
heartbeat intervals sent every PUT of its volumes below quorum until the next beat.

The volume table and the disks' states (failed, draining, drained) live in the index
(index/disks.py) and may be changed by a one-shot command while this process runs;
`refresh` reloads them whenever the table's generation number moved. A failed disk
counts as down whatever its heartbeat says: its slots are being rebuilt elsewhere.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from contextlib import contextmanager

from .index import disks as disk_table
from .node.disk import Disk
from .placement.volumes import DiskInfo, build_volumes, grow_volumes

log = logging.getLogger("pocket.cluster")


class Cluster:
    def __init__(self, disks: dict[str, Disk], infos: list[DiskInfo], heartbeat: float = 2.0, min_free_bytes: int = 0,
                 timeout: float = 10.0):
        self.disks = disks
        self.infos = {d.disk_id: d for d in infos}
        self.volumes: dict[str, dict] = {}
        self.states: dict[str, dict] = {}   # disk id -> {"state": failed|draining|drained, ...}
        self.generation = -1
        self.on_unknown_disks = None        # callback(set of ids) -> opens disks added to the config
        self.on_change = None               # async callback after the table changed (publishes it to the disks)
        self._unpublished = False           # a table adopted since on_change last ran
        self.on_beat = None                 # async callback after each heartbeat's refresh
        self._writes: Counter[int] = Counter()   # uploads in progress by the table generation they chose under
        self.usage: dict[str, dict] = {}
        self._down_since: dict[str, float] = {}
        self._heartbeat = heartbeat
        self._timeout = timeout
        self.min_free_bytes = min_free_bytes
        self._task: asyncio.Task | None = None

    def load_volumes(self, index, widths: set[int], grow: bool = False) -> None:
        """Use the volume table in the index; create volumes for widths that have none.

        With `grow` (the gateway at start), disks of the config that are in no volume and
        in service get new volumes of their own, so new writes use them at once."""
        self.ensure_volumes(index, widths, grow)
        self.refresh(index, force=True)

    async def aload_volumes(self, index, widths: set[int], grow: bool = False) -> None:
        """load_volumes for asyncio code: index work through `index.call`, the table adopted on the loop."""
        await index.call(self.ensure_volumes, index, widths, grow)
        await self.arefresh(index, force=True)

    def ensure_volumes(self, index, widths: set[int], grow: bool = False) -> None:
        volumes = index.get_volumes()
        have = {v["width"] for v in volumes}
        missing = sorted(widths - have)
        for width in missing:
            volumes += build_volumes(list(self.infos.values()), width)
        if missing:
            index.put_volumes(volumes)
        elif grow:
            self._grow(index, volumes, widths)

    def _grow(self, index, volumes: list[dict], widths: set[int]) -> None:
        with index.read() as ops:
            states = disk_table.states(ops)
        usable = [d for d in self.infos.values() if states.get(d.disk_id, {}).get("state") not in
                  disk_table.OUT_OF_SERVICE]
        added = grow_volumes(volumes, usable, widths)
        if added:
            try:
                index.write(lambda ops: disk_table.add_volumes(ops, added))
            except disk_table.SlotChanged:   # another worker (or gateway) starting beside us grew it
                log.info("the volume table was grown by another process starting at the same time; using it")
                return
            fresh = sorted({d for v in added for d in v["disks"]} - {d for v in volumes for d in v["disks"]})
            log.info("new disks %s: added volumes %s; new writes use them now. Run `pocket rebalance` to "
                     "move existing data onto them", fresh, [v["id"] for v in added])

    def refresh(self, index, force: bool = False) -> bool:
        """Reload the volume table and disk states if their generation moved; True if it did."""
        return self._adopt(self._table(index, force))

    async def arefresh(self, index, force: bool = False) -> bool:
        """refresh for asyncio code: the read goes through `index.call` (off the loop on PostgreSQL)."""
        return self._adopt(await index.call(self._table, index, force))

    def _table(self, index, force: bool) -> tuple[int, list[dict], dict] | None:
        """(generation, volumes, disk states) from the index, or None if the generation is ours."""
        with index.read() as ops:
            gen = disk_table.generation(ops)
            if gen == self.generation and not force:
                return None
            return gen, ops.get_volumes(), disk_table.states(ops)

    def _adopt(self, table: tuple[int, list[dict], dict] | None) -> bool:
        if table is None:
            return False
        gen, volumes, states = table
        unknown = {d for v in volumes for d in v["disks"]} - set(self.disks)
        if unknown and self.on_unknown_disks is not None:
            self.on_unknown_disks(unknown)
            unknown -= set(self.disks)
        if unknown:
            raise RuntimeError(f"the index names disks {sorted(unknown)} that are not in the config; "
                               "restore them to the config (or replace them) before starting")
        if self.generation >= 0:
            log.info("volume table changed (generation %d -> %d); using the new one", self.generation, gen)
        # Whoever adopted it (a scrape, this process's own commit, the heartbeat), the heartbeat
        # publishes it: before, a table this process committed itself was never published.
        self._unpublished = self.generation >= 0
        self.volumes = {v["id"]: v for v in volumes}
        self.states, self.generation = states, gen
        return True

    @contextmanager
    def writing(self):
        """Around an upload: a slot move deletes old copies only once no upload that chose
        its volume under an older table is still writing (see disks/moves.py)."""
        gen = self.generation
        self._writes[gen] += 1
        try:
            yield
        finally:
            self._writes[gen] -= 1
            if not self._writes[gen]:
                del self._writes[gen]

    def oldest_write(self) -> int:
        """The oldest table generation an upload in progress is using (the current one if none)."""
        return min(self._writes, default=self.generation)

    def state(self, disk_id: str) -> str:
        """failed / draining / drained (stored), else up / down (liveness)."""
        stored = self.states.get(disk_id, {}).get("state")
        return stored or ("up" if self.is_up(disk_id) else "down")

    def in_service(self, disk_id: str) -> bool:
        """May take new slots: up, with room, and not failed, draining or drained."""
        return self.states.get(disk_id, {}).get("state") not in disk_table.OUT_OF_SERVICE and \
            self.is_writable(disk_id)

    def is_up(self, disk_id: str) -> bool:
        return disk_id not in self._down_since and self.states.get(disk_id, {}).get("state") != disk_table.FAILED

    def mark_down(self, disk_id: str, reason: str) -> None:
        if disk_id not in self._down_since:
            log.warning("disk %s marked down: %s; reads go degraded, writes avoid it", disk_id, reason)
            self._down_since[disk_id] = time.monotonic()

    def has_room(self, disk_id: str) -> bool:
        """False once the disk's free space is below the reserve (from the last heartbeat,
        or at once when a write failed with ENOSPC); unknown usage counts as room."""
        usage = self.usage.get(disk_id)
        return usage is None or usage.get("free", 0) >= max(self.min_free_bytes, 1)

    def is_writable(self, disk_id: str) -> bool:
        return self.is_up(disk_id) and self.has_room(disk_id)

    def mark_full(self, disk_id: str) -> None:
        log.warning("disk %s is full; new archives go elsewhere until it has %d bytes free again",
                    disk_id, self.min_free_bytes)
        self.usage[disk_id] = {**self.usage.get(disk_id, {}), "free": 0}

    def mark_up(self, disk_id: str) -> None:
        if self._down_since.pop(disk_id, None) is not None:
            log.info("disk %s is back up", disk_id)

    def down_disks(self) -> dict[str, float]:
        """Disks not answering (failed ones too), with seconds since they stopped."""
        now = time.monotonic()
        out = {d: now - t for d, t in self._down_since.items()}
        for d, st in self.states.items():
            if st["state"] == disk_table.FAILED:
                out.setdefault(d, 0.0)
        return out

    async def check_once(self) -> None:
        async def probe(disk_id, disk):
            try:
                self.usage[disk_id] = await asyncio.wait_for(disk.health(), self._timeout)
                self.mark_up(disk_id)
            except Exception as e:  # any failure to answer is "down" to placement
                self.mark_down(disk_id, f"heartbeat failed: {e!r}")
        await asyncio.gather(*(probe(i, d) for i, d in self.disks.items()))

    async def _loop(self, index) -> None:
        while True:
            await self.check_once()
            if index is not None:
                try:
                    await self.arefresh(index)
                    if self._unpublished and self.on_change is not None:
                        self._unpublished = False     # an adoption while publishing sets it again
                        try:
                            await self.on_change()
                        except Exception:
                            self._unpublished = True
                            raise
                except Exception as e:
                    log.error("could not reload or publish the volume table: %s", e)
            if self.on_beat is not None:
                try:
                    await self.on_beat()
                except Exception as e:
                    log.error("could not share this worker's uploads in progress through the index: %s; "
                              "disk moves wait until it can", e)
            await asyncio.sleep(self._heartbeat)

    def start(self, index=None) -> None:
        """Heartbeat every disk; with `index`, also pick up volume-table changes each beat."""
        self._task = asyncio.get_running_loop().create_task(self._loop(index))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
