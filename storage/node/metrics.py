"""Prometheus metrics of the disks one process owns, and of a node's internal API.

`DiskCollector` reads its numbers when scraped (disk usage, packs, the disk scrubber's
state), so nothing has to keep gauges up to date; a node exports it at `/metrics`, and
the gateway adds it to its own registry for the disks it opens in-process (`pocket up`),
so both kinds of disk look the same to Prometheus. Scrub counters come from the
scrubber's state file and so survive restarts.
"""
from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from ..metrics import process_metrics


class DiskCollector:
    def __init__(self, stores: dict):
        self.stores = stores

    def collect(self):
        g = {name: GaugeMetricFamily(f"pocket_node_{name}", doc, labels=["disk"]) for name, doc in (
            ("disk_total_bytes", "Size of the disk's filesystem"),
            ("disk_used_bytes", "Used bytes on the disk's filesystem"),
            ("disk_free_bytes", "Free bytes on the disk's filesystem (under a capacity quota: what it still allows)"),
            ("disk_capacity_bytes", "Bytes Pocket may use on the disk: its capacity quota, else the filesystem size"),
            ("pack_files", "Pack files on the disk"),
            ("packed_archives", "Small archives stored in packs"),
            ("pack_bytes", "Bytes in pack files"),
            ("pack_live_bytes", "Bytes of pack records still current (the rest is for compaction)"),
            ("archives", "Archives on the disk, as counted by the last full scrub pass"),
            ("scrub_corrupt_archives", "Archives the scrubber found corrupt that are still there"),
            ("scrub_corrupt_records", "Packed records the scrubber found corrupt"),
            ("scrub_pass_running", "1 while a scrub pass runs"),
            ("scrub_pass_bytes_checked", "Bytes checked so far by the pass in progress"),
            ("scrub_last_full_pass_timestamp_seconds", "When the last full scrub pass finished (0: never)"),
            ("scrub_last_full_pass_seconds", "How long the last full scrub pass took"),
        )}
        c = {name: CounterMetricFamily(f"pocket_node_{name}", doc, labels=["disk"]) for name, doc in (
            ("scrub_bytes_checked", "Archive bytes read and checked by the disk scrubber"),
            ("scrub_corrupt_found", "Corrupt archives and records the disk scrubber found"),
            ("pack_syncs", "fsyncs of pack appends (each covers a batch)"),
        )}
        for disk_id, store in self.stores.items():
            try:
                usage = store.usage()
            except OSError:
                continue
            packs = usage["packs"]
            for key in ("total", "used", "free"):
                g[f"disk_{key}_bytes"].add_metric([disk_id], usage[key])
            g["disk_capacity_bytes"].add_metric([disk_id], usage.get("capacity") or usage["total"])
            g["pack_files"].add_metric([disk_id], packs["packs"])
            g["packed_archives"].add_metric([disk_id], packs["archives"])
            g["pack_bytes"].add_metric([disk_id], packs["bytes"])
            g["pack_live_bytes"].add_metric([disk_id], packs["live_bytes"])
            c["pack_syncs"].add_metric([disk_id], packs["syncs"])
            if store.scrubber is None:
                continue
            st = store.scrubber.state
            last, running = st["last_full_pass"] or {}, st["pass"]
            g["archives"].add_metric([disk_id], last.get("archives_checked", 0))
            g["scrub_corrupt_archives"].add_metric([disk_id], len(st["corrupt"]))
            g["scrub_corrupt_records"].add_metric([disk_id], len(st["corrupt_records"]))
            g["scrub_pass_running"].add_metric([disk_id], 1 if running else 0)
            g["scrub_pass_bytes_checked"].add_metric([disk_id], running["bytes_checked"] if running else 0)
            g["scrub_last_full_pass_timestamp_seconds"].add_metric([disk_id], last.get("finished", 0))
            g["scrub_last_full_pass_seconds"].add_metric([disk_id], last.get("seconds", 0))
            c["scrub_bytes_checked"].add_metric([disk_id], st["totals"]["bytes_checked"])
            c["scrub_corrupt_found"].add_metric([disk_id], st["totals"]["corrupt_found"])
        yield from g.values()
        yield from c.values()


class ForwardedDiskMetrics:
    """The disk families of the process that owns a multi-worker gateway's in-process disks
    (cli/serve.py), fetched from its /metrics when the gateway is scraped: to Prometheus
    those disks look as they did when the gateway process opened them itself."""

    NAMES = frozenset(f.name for f in DiskCollector({}).collect())

    def __init__(self, urls: list[str]):
        self.urls = urls
        self.families: list = []

    async def fetch(self, session, timeout: float = 5.0) -> None:
        found = []
        for url in self.urls:
            try:
                async with session.get(url + "/metrics", timeout=timeout) as r:
                    text = await r.text()
            except Exception:
                continue    # its disks show as down on the gateway's own gauges
            found += [f for f in text_string_to_metric_families(text) if f.name in self.NAMES]
        self.families = found

    def collect(self):
        yield from self.families


class NodeMetrics:
    """A node process's registry: its disks, and its API's requests by route."""

    def __init__(self, stores: dict):
        self.registry = r = CollectorRegistry()
        process_metrics(r, "node")
        r.register(DiskCollector(stores))
        self.requests = Counter("pocket_node_requests", "Internal API requests by method, route and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("pocket_node_request_seconds", "Internal API latency (until the handler returns)",
                                 ["method", "route"], registry=r,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        # the labelled children, found once: `labels()` takes a lock and checks its arguments
        # on every call, ~5 % of a node's CPU for a small fetch (py-spy --gil)
        self._counted: dict[tuple[str, str, str], Counter] = {}
        self._timed: dict[tuple[str, str], Histogram] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            elapsed = time.monotonic() - started
            method = request.method
            counted = self._counted.get((method, route, status))
            if counted is None:
                counted = self._counted[(method, route, status)] = self.requests.labels(method, route, str(status))
            timed = self._timed.get((method, route))
            if timed is None:
                timed = self._timed[(method, route)] = self.latency.labels(method, route)
            counted.inc()
            timed.observe(elapsed)

    async def handler(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
