"""Prometheus metrics: one registry per gateway, exported at /_pocket/metrics.

Disks the gateway opens in-process add their own collector (node/metrics.py), the same
one a node process exports at /metrics.

With several worker processes (storage/workers.py) a scrape reaches whichever worker
accepts it, so the workers use prometheus_client's multiprocess mode: counters and
histograms are summed over every worker (those that died included: a counter never goes
back), gauges report the most recent value any worker set (they say what the cluster is
like, and the scraped worker sets them just before rendering). Collectors read at
scrape time (this process, the index, disks) answer from the scraped worker itself.
"""
from __future__ import annotations

import glob
import os
import shutil
from importlib import metadata

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest,
                               multiprocess, values)
from prometheus_client.core import GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_between_workers(folder: str) -> None:
    """Keep this process's metric values in `folder`, beside its sibling workers' (call
    before any metric is made; the folder is the master's, empty at its start)."""
    os.environ[MULTIPROC_ENV] = folder
    values.ValueClass = values.get_value_class()


class SiblingsCollector(multiprocess.MultiProcessCollector):
    """Every worker's values, leaving out a file a sibling is creating at this moment.

    prometheus_client opens a new values file empty and only then sizes it; a scrape that
    read it in between failed with struct.error, a 500 to Prometheus (CI saw one, a scrape
    right after a gateway's start on a loaded box). The file holds no value yet."""

    def collect(self):
        return self.merge([f for f in glob.glob(os.path.join(self._path, "*.db")) if _sized(f)], accumulate=True)


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) >= 8     # the used-bytes header, written right after sizing
    except FileNotFoundError:
        return False


def gauge(*args, **kwargs) -> Gauge:
    """A gauge whose value under several workers is the one set last (see the docstring)."""
    return Gauge(*args, multiprocess_mode="mostrecent", **kwargs)


def process_metrics(registry: CollectorRegistry, role: str) -> ProcessCollector:
    """Memory, CPU, open files and start time of this process, and which Pocket runs it: the
    dashboard's process-health row, and after a rolling upgrade, which servers still run what."""
    collector = ProcessCollector(registry=registry)
    info = gauge("pocket_build_info", "1, labelled with the running Pocket version and process role",
                 ["version", "role"], registry=registry)
    try:
        version = metadata.version("pocket-storage")
    except metadata.PackageNotFoundError:
        version = "unknown"
    info.labels(version, role).set(1)
    return collector


class IndexCollector:
    """How full the metadata index is, read when scraped: LMDB grows its map on demand up to
    max_map_size, and a commit fails (507 to clients) when the index filesystem is full."""

    def __init__(self, index):
        self.index = index

    def collect(self):
        if not getattr(self.index, "local", True):
            return    # PostgreSQL: its own exporter tells; counting rows on every scrape would cost a scan
        stats = self.index.stats() if hasattr(self.index, "stats") else {}
        for name, key, doc in (("used_bytes", "used_bytes", "Bytes of the index in use"),
                               ("map_bytes", "map_size", "Current LMDB map size"),
                               ("max_bytes", "max_map_size", "Largest map the index may grow to")):
            value = stats.get(key, getattr(self.index, key, None))
            if value is not None:
                yield GaugeMetricFamily(f"pocket_index_{name}", doc, value=value)
        path = stats.get("path") or getattr(self.index, "path", None)
        if path:
            try:
                free = shutil.disk_usage(path).free
            except OSError:
                return
            yield GaugeMetricFamily("pocket_index_filesystem_free_bytes",
                                    "Free bytes on the filesystem holding the index", value=free)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self._here = [process_metrics(r, "gateway")]   # read at scrape time by the scraped process
        self.ready = gauge("pocket_gateway_ready", "1 while /_pocket/ready says ready (0 also while draining)",
                           registry=r)
        self.requests = Counter("pocket_s3_requests", "S3 requests by operation and status",
                                ["operation", "status"], registry=r)
        self.latency = Histogram("pocket_s3_request_seconds", "S3 request latency (until the handler returns)",
                                 ["operation"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self._series: dict[tuple[str, int], tuple] = {}   # see request_done
        self.bytes_in = Counter("pocket_s3_bytes_received", "Object body bytes received by PUT and UploadPart, counted as they arrive", registry=r)
        self.bytes_out = Counter("pocket_s3_bytes_sent", "Response body bytes sent", registry=r)
        self.disk_up = gauge("pocket_disk_up", "1 if the disk answers, 0 if it is down", ["disk"], registry=r)
        self.disk_state = gauge("pocket_disk_state", "1 for the disk's state: up, down, failed, draining, drained",
                                ["disk", "state"], registry=r)
        self.disk_free = gauge("pocket_disk_free_bytes", "Free bytes on the disk's filesystem", ["disk"], registry=r)
        self.damage = Counter("pocket_fragments_damaged", "Missing or corrupt fragments found by reads",
                              registry=r)
        # durability: storage/durability/ and storage/disks/
        self.repair_queue = gauge("pocket_repair_queue_length", "Object versions waiting for repair", registry=r)
        self.at_risk = gauge("pocket_objects_at_risk",
                             "Queued object versions by fragments left, and spare: how many of those beyond the k "
                             "needed to read (0: one more loss and they are gone)",
                             ["shape", "fragments_left", "spare"], registry=r)
        self.repaired_fragments = Counter("pocket_repaired_fragments", "Fragment archives rebuilt", registry=r)
        self.repaired_bytes = Counter("pocket_repaired_bytes", "Bytes of fragment archives rebuilt", registry=r)
        self.scrub_corrupt = Counter("pocket_scrub_corrupt_fragments", "Corrupt fragments the scrubber found",
                                     registry=r)
        self.scrub_missing = Counter("pocket_scrub_missing_fragments", "Missing fragments the scrubber found",
                                     registry=r)
        self.orphans_removed = Counter("pocket_orphans_removed", "Unreferenced archives the scrubber deleted",
                                       registry=r)
        # lifecycle: storage/lifecycle/runner.py
        self.lifecycle_expired = Counter("pocket_lifecycle_objects_expired",
                                         "Objects and versions deleted by lifecycle rules", ["kind"], registry=r)
        self.lifecycle_aborted = Counter("pocket_lifecycle_uploads_aborted",
                                         "Incomplete multipart uploads aborted by lifecycle rules", registry=r)
        self.lifecycle_passes = Counter("pocket_lifecycle_passes", "Lifecycle passes finished (stalled: not rising)",
                                        registry=r)

    def request_done(self, operation: str, status: int, seconds: float) -> None:
        """Count one S3 request. The labelled series are looked up once per (operation,
        status) and kept: `.labels()` takes a lock and builds a tuple on every call, which
        was as much as counting and observing themselves."""
        series = self._series.get((operation, status))
        if series is None:
            series = self._series[(operation, status)] = (self.requests.labels(operation, str(status)),
                                                          self.latency.labels(operation))
        series[0].inc()
        series[1].observe(seconds)

    def add_collector(self, collector) -> None:
        """A collector read at scrape time (disks, the index)."""
        self.registry.register(collector)
        self._here.append(collector)

    def render(self) -> bytes:
        if MULTIPROC_ENV not in os.environ:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        SiblingsCollector(merged)
        for collector in self._here:
            merged.register(collector)
        return generate_latest(merged)
