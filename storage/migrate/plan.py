"""`pocket migrate plan`: inventory the source buckets, then write the report.

The inventory (inventory.py) comes from listing each bucket, or from an S3 Inventory
report (manifest.py) when the operator has one; the report (report.py) is computed
from the inventory alone, so it can be rewritten with other prices or another order
without touching S3 again.
"""
from __future__ import annotations

import logging
import os

from ..index.index import open_index
from . import estimate, inventory, listing, manifest, report, settings, state
from .source import describe

log = logging.getLogger("pocket.migrate.plan")


def run(cfg, buckets, args: dict, inventory_url: str | None = None, report_path: str | None = None,
        bandwidth: str | None = None, prices_path: str | None = None, order: list[str] | None = None,
        policy: str | None = None) -> dict:
    """`pocket migrate plan`: remember each bucket's source, inventory it, write the report."""
    pairs = settings.targets(buckets, args.get("target"))
    index = open_index(cfg)
    try:
        sources = [settings.resolve(cfg, index, b, t, args) for b, t in pairs]
        for (_, target), (src, record, _) in zip(pairs, sources):
            settings.remember(index, target, src, record)
    finally:
        index.close()
    inventoried = []
    for (source_bucket, target), (src, _, keys_file) in zip(pairs, sources):
        client = settings.client_for(src, keys_file)
        inventoried += inventory_buckets(cfg, client, [(source_bucket, target)], inventory_url)
    _record_totals(cfg, inventoried)
    where = ", ".join(sorted({describe(src) for src, _, _ in sources}))
    out = write_report(cfg, [t for _, t in pairs], bandwidth or "1Gbit", prices_path, order, report_path, where,
                       policy)
    return {**out, "inventoried": inventoried}


def _record_totals(cfg, inventoried: list[dict]) -> None:
    """What the backfill will copy, kept in each bucket's migration record: `status` and the
    `pocket_migrate_objects_planned` metric measure progress and ETA against it."""
    index = open_index(cfg)
    try:
        for totals in inventoried:
            def record(ops, t=totals):
                m = state.get(ops, t["bucket"])
                if m is not None:
                    m.counters.update(source_objects=t["versions"], source_bytes=t["version_bytes"])
                    state.put(ops, m)
            index.write(record)
    finally:
        index.close()


def inventory_buckets(cfg, client, pairs: list[tuple[str, str]], inventory_url: str | None = None,
                      parallel: int = listing.PARALLEL) -> list[dict]:
    """List (or read the inventory of) each (source bucket, Pocket bucket) into the database."""
    db = inventory.connect(cfg.data)
    done = []
    try:
        for source_bucket, target in pairs:
            versioning = listing.versioning_of(client, source_bucket)
            if inventory_url:
                m = manifest.read_manifest(client, inventory_url)
                if m["sourceBucket"] != source_bucket:
                    raise manifest.ManifestError(f"{inventory_url} inventories bucket {m['sourceBucket']!r}, "
                                                 f"not {source_bucket!r}")
                entries, method = manifest.entries(client, m), "inventory"
            else:
                entries, method = listing.list_bucket(client, source_bucket, versioning != "", parallel), "list"
            totals = inventory.replace_bucket(db, target, source_bucket, versioning, method, entries)
            log.info("inventoried %s: %d objects, %d bytes (%s)", source_bucket, totals["objects"], totals["bytes"],
                     method)
            done.append({**totals, "source_bucket": source_bucket, "versioning": versioning, "method": method})
    finally:
        db.close()
    return done


def write_report(cfg, buckets: list[str] | None, bandwidth: str, prices_path: str | None,
                 order: list[str] | None, out_path: str | None, source: str, policy: str | None = None) -> dict:
    """Compute every bucket's figures from the inventory and write the HTML report.

    `buckets` None: every inventoried bucket. `order` (the operator's) is remembered in the
    database and replaces the suggested one. Returns the figures and the report's path."""
    prices = estimate.Prices.load(prices_path)
    rate = estimate.parse_bandwidth(bandwidth)
    disk = estimate.DiskPolicy.from_config(cfg, policy)
    db = inventory.connect(cfg.data, create=False)
    try:
        names = buckets or [b for (b,) in db.execute("SELECT bucket FROM buckets ORDER BY bucket")]
        missing = [b for b in names if db.execute("SELECT 1 FROM buckets WHERE bucket=?", (b,)).fetchone() is None]
        if missing:
            raise ValueError(f"not inventoried yet: {', '.join(missing)} (run `pocket migrate plan` on them)")
        stats = [estimate.bucket_stats(db, b, prices, disk, rate) for b in names]
        if order:
            unknown = set(order) - set(names)
            if unknown:
                raise ValueError(f"--order names buckets not in the plan: {', '.join(sorted(unknown))}")
            inventory.set_order(db, order)
        saved = [b for (b,) in db.execute("SELECT bucket FROM plan_order ORDER BY position")]
    finally:
        db.close()
    suggested = estimate.suggested_order(stats)
    chosen = [b for b in saved if b in names] + [b for b in suggested if b not in saved]
    note = (f"objects ≤ {disk.small_threshold} B at {disk.small_factor:g}× their size, "
            f"larger at {disk.large_factor:g}× ({policy or cfg.policies[cfg.storage.default_policy]})")
    path = out_path or os.path.join(cfg.data, "migrate", "plan.html")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(report.render(stats, chosen, prices, rate, note, source))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"report": path, "order": chosen, "suggested_order": suggested, "buckets": stats,
            "bandwidth_bytes_per_second": rate}
