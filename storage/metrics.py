"""Prometheus metrics: one registry per gateway, exported at /_pocket/metrics.

Disks the gateway opens in-process add their own collector (node/metrics.py), the same
one a node process exports at /metrics."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pocket_s3_requests", "S3 requests by operation and status",
                                ["operation", "status"], registry=r)
        self.latency = Histogram("pocket_s3_request_seconds", "S3 request latency (until the handler returns)",
                                 ["operation"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.bytes_in = Counter("pocket_s3_bytes_received", "Request body bytes received (storage/s3/access_log.py)",
                                registry=r)
        self.bytes_out = Counter("pocket_s3_bytes_sent", "Response body bytes sent", registry=r)
        self.disk_up = Gauge("pocket_disk_up", "1 if the disk answers, 0 if it is down", ["disk"], registry=r)
        self.disk_state = Gauge("pocket_disk_state", "1 for the disk's state: up, down, failed, draining, drained",
                                ["disk", "state"], registry=r)
        self.disk_free = Gauge("pocket_disk_free_bytes", "Free bytes on the disk's filesystem", ["disk"], registry=r)
        self.damage = Counter("pocket_fragments_damaged", "Missing or corrupt fragments found by reads",
                              registry=r)
        # durability: storage/repair/
        self.repair_queue = Gauge("pocket_repair_queue_length", "Object versions waiting for repair", registry=r)
        self.at_risk = Gauge("pocket_objects_at_risk", "Queued object versions by fragments left",
                             ["shape", "fragments_left"], registry=r)
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
