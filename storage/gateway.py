"""The gateway process: wires config, disks, index, object service and the S3 app.

Disks are opened in-process (`DiskStore`) for nodes without a URL — the embedded
`pocket up` default — and reached over HTTP (`RemoteDisk`) otherwise; nothing above
this module knows the difference.
"""
from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
from aiohttp import web

from .cluster import Cluster
from .policy_spec import parse_policy
from .config import Config, ConfigError
from .config import load as load_config
from .disks.actions import publish_table
from .disks.failures import FailureWatcher
from .disks.moves import SlotMover
from .durability.queue import RepairQueue
from .durability.repair import Repairer
from .durability.scrub import Scrubber
from .executor import io_executor
from .index.batcher import IndexWriter
from .index.index import open_index
from .leased import LeasedDaemons, holder_id
from .lifecycle.runner import LifecycleRunner
from .metrics import IndexCollector, Metrics
from .migrate import gateway_copy
from .migrate.wiring import route_services
from .node.client import node_session
from .node.daemons import DiskDaemons
from .node.metrics import DiskCollector, ForwardedDiskMetrics
from .node.open_disks import open_disks
from .node.store import DiskStore
from .objects import in_flight
from .objects.buckets import BucketService
from .objects.build import object_services
from .s3.app import build_app
from .s3.limits import UploadSlots
from .shared_writes import SharedWrites
from .workers import worker_number

log = logging.getLogger("pocket.gateway")

DISK_STATES = ("up", "down", "failed", "draining", "drained")


class Gateway:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.region = cfg.gateway.region
        self.domains = cfg.virtual_host_domains  # virtual-host-style bucket addressing
        self.metrics = Metrics()
        self._secrets = {c.access_key: c.secret_key for c in cfg.credentials}
        self.session: aiohttp.ClientSession | None = None
        self.leased: LeasedDaemons | None = None
        self.local_disks: dict[str, DiskStore] = {}
        self.worker = worker_number()   # which worker process this is (None: the only one)
        # gateway.max_uploads bounds the gateway's memory: each worker takes its share
        self.upload_slots = UploadSlots(cfg.gateway.max_uploads if self.worker is None else
                                        max(1, -(-cfg.gateway.max_uploads // cfg.workers)))
        self.reporter: in_flight.Reporter | None = None   # this gateway's writes in flight, into the index
        self.draining = False    # set on SIGTERM: /_pocket/ready says 503 so load balancers stop sending

    def secret_for(self, access_key: str) -> str | None:
        return self._secrets.get(access_key)

    async def start(self) -> None:
        asyncio.get_running_loop().set_default_executor(io_executor())
        self.session = node_session()
        disks, infos = open_disks(self.cfg, self.session)
        self.index = open_index(self.cfg)
        self.index.ahead.depth = self.cfg.workers   # see index/list_ahead.py
        self.writer = IndexWriter(self.index)
        self.cluster = Cluster(disks, infos, self.cfg.gateway.heartbeat, self.cfg.storage.min_free_bytes,
                               self.cfg.storage.node_timeout)
        self.cluster.on_unknown_disks = self._open_added_disks
        await self.cluster.aload_volumes(self.index, {sum(parse_policy(s)) for s in self.cfg.policies.values()},
                                         grow=True)
        st = self.cfg.storage
        self.objects, self.multipart = object_services(self.cfg, self.cluster, self.index, self.writer)
        self.buckets = BucketService(self.index, self.writer, self.objects, self.multipart)
        self.repairs = RepairQueue(self.index, self.writer)
        self.objects.on_degraded = lambda record, missing: self.repairs.add_later(record, missing, "put")
        # each worker process is its own holder: of leases, and of its report of writes in flight
        self.holder = holder_id(self.cfg.gateway.listen, self.worker)
        self.scrubber = Scrubber(self.cluster, self.index, self.repairs, self.cfg.scrub.rate,
                                 self.cfg.scrub.orphan_grace, self.metrics, writes=self.objects.writes,
                                 holder=self.holder)
        self.lifecycle = LifecycleRunner(self.objects, self.multipart, self.cfg.lifecycle.day_seconds,
                                         self.cfg.lifecycle.rate, self.metrics)
        self.repairer = Repairer(self.cluster, self.index, self.repairs, self.cfg.repair.concurrency,
                                 st.node_timeout, self.metrics, rate=self.cfg.repair.rate)
        # the S3 handlers' door: migrating buckets routed, every other bucket passed through
        self.migration = route_services(self)
        siblings = [holder_id(self.cfg.gateway.listen, w) for w in range(self.cfg.workers)] \
            if self.worker is not None else []
        self.writes = SharedWrites(self.cluster, self.index, self.writer, self.holder, siblings,
                                   # a beat waits up to node_timeout for a silent disk, and as long again
                                   # to publish a changed table: a live worker's row never ages past this
                                   stale_after=max(10 * self.cfg.gateway.heartbeat, 10.0, 3 * st.node_timeout),
                                   own_ready=lambda: self._own_readiness()["ready"], run=str(os.getppid()))
        self.failures = FailureWatcher(self.cluster, self.repairs,
                                       SlotMover(self.cluster, self.index, self.repairs, self.repairer),
                                       self.cfg.repair.failed_after, oldest_write=self.writes.oldest_write)
        await self.cluster.check_once()
        self.cluster.on_change = lambda: publish_table(self.cluster, st.node_timeout)
        if self.cluster.generation > 0:   # the table was changed (or grown) since it was built
            await publish_table(self.cluster, st.node_timeout)
        await self.writes.beat()
        self.cluster.on_beat = self.writes.beat
        self.cluster.start(self.index)
        self.local_disks.update({i: d for i, d in disks.items() if isinstance(d, DiskStore)})
        self.daemons = DiskDaemons(self.local_disks, self.cfg)
        self.daemons.start()
        self.metrics.add_collector(DiskCollector(self.local_disks))
        self.owned_disks = ForwardedDiskMetrics([n.url for n in self.cfg.nodes if n.owned])
        self.metrics.add_collector(self.owned_disks)
        self.metrics.add_collector(IndexCollector(self.index))
        self._start_background()

    def _start_background(self) -> None:
        """Collecting scrub findings, repair, the failed-disk watcher and lifecycle passes run
        beside the data path, in one gateway of the cluster at a time: the one holding each
        daemon's lease in the index (storage/leased.py). The bytes are checked where they
        are (the disks' own scrubbers, storage/node/disk_scrub.py)."""
        self.leased = LeasedDaemons(self.index, self.writer, self.holder,
                                    self.cfg.index.lease_seconds)
        if self.cfg.scrub.enabled:
            self.leased.add("scrub", lambda: self.scrubber.run_forever(self.cfg.scrub.collect_interval,
                                                                      self.cfg.scrub.start_delay))
        if self.cfg.repair.enabled:
            self.leased.add("repair", lambda: self.repairer.run_forever(self.cfg.repair.interval))
            self.leased.add("failures", lambda: self.failures.run_forever(
                min(self.cfg.repair.interval, self.cfg.repair.failed_after / 4)))
        if self.cfg.lifecycle.interval:
            self.leased.add("lifecycle", lambda: self.lifecycle.run_forever(self.cfg.lifecycle.interval))
        # Writes a migrating bucket owes one side: retried by one gateway at a time, so two
        # gateways never replay the same entry at once (storage/migrate/journal.py).
        self.leased.add("migrate-journal", lambda: self.migration.journal.run_forever())
        self.leased.start()
        # scrubbers in other processes keep the archives of this gateway's uncommitted writes
        self.reporter = in_flight.Reporter(self.writer, self.holder, self.objects.writes)
        self.reporter.start()

    def _open_added_disks(self, wanted: set[str]) -> None:
        """The volume table names disks this process has not opened: added to the config
        after start and given slots by `pocket disk replace`. Read the config again for them."""
        if not self.cfg.source:
            return
        try:
            fresh = load_config(self.cfg.source)
        except ConfigError as e:
            log.error("the volume table names disks %s; re-reading %s for them failed: %s", sorted(wanted),
                      self.cfg.source, e)
            return
        if self.worker is not None:
            # in-process disks are served by the process that owns them (cli/serve.py); it
            # opened its disks at start, so new ones of such a node wait for a restart
            urls = {n.id: n.url for n in self.cfg.nodes}
            for node in fresh.nodes:
                node.url = node.url or urls.get(node.id, "")
            unowned = {d.id for n in fresh.nodes if not n.url for d in n.disks} & wanted
            if unowned:
                log.error("the volume table names in-process disks %s added since start; with several workers "
                          "only a restart of the gateway opens them", sorted(unowned))
                wanted -= unowned
        disks, infos = open_disks(fresh, self.session, wanted)
        self.cluster.disks.update(disks)
        self.cluster.infos.update({i.disk_id: i for i in infos})
        added = {i: d for i, d in disks.items() if isinstance(d, DiskStore)}
        self.local_disks.update(added)
        self.daemons.add(added)
        log.info("opened disks %s, added to the config since start", sorted(disks))

    async def stop(self) -> None:
        if self.leased is not None:
            await self.leased.stop()
        await self.objects.drain()
        await self.repairs.drain()
        if self.reporter is not None:
            await self.reporter.stop()
        await self.cluster.stop()
        await self.daemons.stop()
        await self.writer.aclose()
        for disk in self.local_disks.values():
            disk.close()
        if self.session:
            await self.session.close()
        self.index.close()

    def app(self) -> web.Application:
        marker = (gateway_copy.ROUTE_HEADER, gateway_copy.ROUTE_VERSION)
        return build_app(self, internal_puts=[(gateway_copy.PATH, gateway_copy.receive, "migrate_copy", marker)])

    def report_damage(self, damage) -> None:
        """Reads that had to decode around a bad fragment end up here: queue the repair."""
        self.metrics.damage.inc(len(damage))
        by_version: dict[str, tuple[dict, dict]] = {}
        for d in damage:
            if d.record is not None:
                record, bad = by_version.setdefault(d.version_id, (d.record, {}))
                bad[d.index] = (d.kind, d.reason)
        for record, bad in by_version.values():
            self.repairs.add_later(record, bad, "read")

    def readiness(self) -> dict:
        """This worker's readiness, ready only if every sibling worker was (shared_writes.py)."""
        state = self._own_readiness()
        state["ready"] = state["ready"] and self.writes.siblings_ready
        return state

    def _own_readiness(self) -> dict:
        down = self.cluster.down_disks()
        widest = max(v["width"] for v in self.cluster.volumes.values())
        need = max(p.quorum for p in self.objects.policies.values())
        up = len(self.cluster.disks) - len(down)
        return {"ready": up >= need and not self.draining, "draining": self.draining, "disks_up": up, "disks_down": sorted(down), "disks_needed": need,
                "volume_width": widest, "volume_generation": self.writes.volume_generation(),
                "oldest_write_generation": self.writes.oldest_write()}

    async def refresh_metrics(self) -> None:
        """Before a scrape: the disk states come from the index, not from this worker's last
        heartbeat, or workers that reloaded the table at different times would answer
        scrapes with different states for the same disk (an alert would flap)."""
        await self.cluster.arefresh(self.index)
        if self.owned_disks.urls:
            await self.owned_disks.fetch(self.session)
        await self.index.call(self._set_gauges)   # it reads the index: off the loop on PostgreSQL

    def _set_gauges(self) -> None:
        for disk_id in self.cluster.disks:
            self.metrics.disk_up.labels(disk_id).set(1 if self.cluster.is_up(disk_id) else 0)
            state = self.cluster.state(disk_id)
            for name in DISK_STATES:
                self.metrics.disk_state.labels(disk_id, name).set(1 if name == state else 0)
            usage = self.cluster.usage.get(disk_id)
            if usage:
                self.metrics.disk_free.labels(disk_id).set(usage["free"])
        self.migration.refresh_metrics()
        self.metrics.ready.set(1 if self.readiness()["ready"] else 0)
        self.metrics.repair_queue.set(self.repairs.length())
        self.metrics.at_risk.clear()
        at_risk = self.repairs.at_risk()
        if self.worker is not None:
            # Under several workers a gauge series another worker set stays exported (storage/
            # metrics.py): set every series of every policy's shape, those with none at risk to 0.
            for policy in self.objects.policies.values():
                k, m = parse_policy(policy.spec)
                for left in range(k + m + 1):
                    at_risk.setdefault(f"{k}+{m}", {}).setdefault(left, 0)
        for shape, counts in at_risk.items():
            k = int(shape.split("+")[0])
            for left, count in counts.items():
                self.metrics.at_risk.labels(shape, str(left), str(left - k)).set(count)
