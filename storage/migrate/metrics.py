"""`pocket_migrate_*` metrics of the gateway's migration routing, on the gateway's registry."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from ..index import migrations
from ..metrics import gauge
from . import state


class MigrateMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = registry or CollectorRegistry()
        self.writes = Counter("pocket_migrate_writes", "Writes to migrating buckets by side and outcome "
                              "(ok, failed: the request failed, journaled: owed to that side)",
                              ["bucket", "side", "outcome"], registry=r)
        self.source_reads = Counter("pocket_migrate_source_reads", "Reads and listings answered by the source",
                                    ["bucket"], registry=r)
        self.verified_reads = Counter("pocket_migrate_verified_reads",
                                      "Reads answered by Pocket before cutover: keys verified equal since their "
                                      "last write", ["bucket"], registry=r)
        self.retries = Counter("pocket_migrate_journal_retries", "Journaled writes retried, by outcome",
                               ["bucket", "outcome"], registry=r)
        self.journal = gauge("pocket_migrate_journal_entries", "Writes still owed to one side", ["bucket"],
                             registry=r)
        self.dirty = gauge("pocket_migrate_dirty_keys", "Keys written since they were last verified", ["bucket"],
                           registry=r)
        self.state = gauge("pocket_migrate_state", "1 for the bucket's migration state", ["bucket", "state"],
                           registry=r)
        self.planned = gauge("pocket_migrate_objects_planned", "Versions and delete markers the plan's inventory "
                             "counted at the source (what the backfill copies)", ["bucket"], registry=r)
        self.copied = gauge("pocket_migrate_objects_copied", "Versions and delete markers the backfill has copied",
                            ["bucket"], registry=r)

    def refresh(self, index, records: list[state.Migration]) -> None:
        """Gauges from the index (at scrape time: the journal and dirty keys change in other processes too)."""
        with index.read() as ops:
            counts = {m.bucket: (migrations.journal_count(ops, m.bucket), migrations.dirty_count(ops, m.bucket),
                                 sum(r.get("objects", 0) for r in migrations.ranges(ops, m.bucket)))
                      for m in records}
        for m in records:
            self.journal.labels(m.bucket).set(counts[m.bucket][0])
            self.dirty.labels(m.bucket).set(counts[m.bucket][1])
            self.copied.labels(m.bucket).set(counts[m.bucket][2])
            if m.counters.get("source_objects") is not None:
                self.planned.labels(m.bucket).set(m.counters["source_objects"])
            for name in state.STATES:
                self.state.labels(m.bucket, name).set(1 if name == m.state else 0)
