"""What a move will cost and take, from the inventory: the numbers of the plan report.

Prices are settings (`Prices`, overridable with `plan --prices FILE.json`); the defaults
are AWS's us-east-1 list prices as of late 2025. AWS waives data-transfer-out fees for
customers leaving it when asked in advance (since March 2024); the report says so rather
than assume it. Pocket's raw disk need follows its storage policies: objects up to the
small-object threshold are replicated, larger ones erasure-coded (n/k of their size).
"""
from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import asdict, dataclass, field, fields

GB = 1e9            # AWS bills decimal gigabytes
RESTORE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")   # must be restored before a GET can read them
MULTIPART_LIMIT = 5 << 30                       # larger objects exist only as multipart uploads
_EDGES = [0, 1, 1 << 10, 64 << 10, 1 << 20, 16 << 20, 128 << 20, 1 << 30, 5 << 30]
_LABELS = ["0 B", "< 1 KiB", "< 64 KiB", "< 1 MiB", "< 16 MiB", "< 128 MiB", "< 1 GiB", "< 5 GiB", "≥ 5 GiB"]
HISTOGRAM = [(lo, hi, label) for lo, hi, label in zip(_EDGES, _EDGES[1:] + [1 << 62], _LABELS)]  # [lo, hi)


@dataclass
class Prices:
    """USD. Egress tiers: (GB up to, price per GB), per month, in order."""
    egress_tiers: list = field(default_factory=lambda: [[10_000, 0.09], [50_000, 0.085], [150_000, 0.07],
                                                        [None, 0.05]])
    get_per_1000: float = 0.0004         # GET and HEAD
    list_per_1000: float = 0.005         # LIST (and every other class-A request)
    storage_gb_month: dict = field(default_factory=lambda: {
        "STANDARD": 0.023, "INTELLIGENT_TIERING": 0.023, "STANDARD_IA": 0.0125, "ONEZONE_IA": 0.01,
        "GLACIER_IR": 0.004, "GLACIER": 0.0036, "DEEP_ARCHIVE": 0.00099, "REDUCED_REDUNDANCY": 0.023})

    @classmethod
    def load(cls, path: str | None) -> "Prices":
        if not path:
            return cls()
        with open(path) as f:
            raw = json.load(f)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown price settings {sorted(unknown)} (known: {sorted(known)})")
        return cls(**raw)


@dataclass
class DiskPolicy:
    """How Pocket stores bytes: size ≤ small_threshold at small_factor, else large_factor."""
    small_threshold: int = 128 << 10
    small_factor: float = 3.0
    large_factor: float = 1.5

    @classmethod
    def from_config(cls, cfg, policy: str | None = None) -> "DiskPolicy":
        """The cluster's policies; `policy` (a name in the config or a spec like ec:8+3)
        replaces the default one for objects above the small-object threshold."""
        from ..policy_spec import parse_policy

        def factor(spec: str) -> float:
            k, m = parse_policy(cfg.policies.get(spec, spec))
            return (k + m) / k
        small = cfg.storage.small_policy
        return cls(cfg.storage.small_threshold if small else -1, factor(small) if small else 1.0,
                   factor(policy or cfg.storage.default_policy))


def egress_cost(bytes_out: int, prices: Prices) -> float:
    gb, cost, floor = bytes_out / GB, 0.0, 0.0
    for limit, price in prices.egress_tiers:
        top = gb if limit is None else min(gb, limit)
        if top > floor:
            cost += (top - floor) * price
        if limit is None or gb <= limit:
            break
        floor = limit
    return cost


def parse_bandwidth(text: str) -> float:
    """Bytes per second from "1Gbit", "10 Gbps", "500Mbit", "100MB/s", "80MiB/s"."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgGtT]?)(i?)(bit|bps|b/s|B/s|B)?\s*", text or "")
    if not m:
        raise ValueError(f"bandwidth {text!r}: say e.g. 1Gbit, 500Mbps or 100MB/s")
    value, unit, binary, kind = float(m[1]), m[2].upper(), m[3], m[4] or "bit"
    value *= (1024 if binary else 1000) ** " KMGT".index(unit or " ")
    return value / 8 if kind in ("bit", "bps", "b/s") else value


def bucket_stats(db: sqlite3.Connection, bucket: str, prices: Prices, disk: DiskPolicy, bandwidth: float,
                 now: float | None = None) -> dict:
    """Everything the report says about one bucket."""
    now = now or time.time()
    row = db.execute("SELECT versioning, method, listed_at FROM buckets WHERE bucket = ?", (bucket,)).fetchone()
    versioning, method, listed_at = row
    q = lambda sql, *a: db.execute(sql, (bucket, *a)).fetchone()  # noqa: E731
    objects, current_bytes = q("SELECT count(*), coalesce(sum(size),0) FROM objects WHERE bucket=? AND is_latest "
                               "AND NOT delete_marker")
    versions, all_bytes, markers = q("SELECT coalesce(sum(NOT delete_marker),0), coalesce(sum(size),0), "
                                     "coalesce(sum(delete_marker),0) FROM objects WHERE bucket=?")
    multipart, parts = q("SELECT count(*), coalesce(sum(parts),0) FROM objects WHERE bucket=? AND parts > 0")
    huge = q("SELECT count(*) FROM objects WHERE bucket=? AND size > ?", MULTIPART_LIMIT)[0]
    recent = q("SELECT count(*) FROM objects WHERE bucket=? AND last_modified > ?", now - 30 * 86400)[0]
    classes = [{"class": c, "objects": n, "bytes": b, "needs_restore": c in RESTORE_CLASSES,
                "monthly": b / GB * prices.storage_gb_month.get(c, prices.storage_gb_month["STANDARD"])}
               for c, n, b in db.execute("SELECT storage_class, count(*), sum(size) FROM objects WHERE bucket=? "
                                         "AND NOT delete_marker GROUP BY storage_class ORDER BY sum(size) DESC",
                                         (bucket,))]
    histogram = []
    for lo, hi, label in HISTOGRAM:
        n, b = q("SELECT count(*), coalesce(sum(size),0) FROM objects WHERE bucket=? AND NOT delete_marker "
                 "AND size >= ? AND size < ?", lo, hi)
        histogram.append({"label": label, "objects": n, "bytes": b})
    top = [{"prefix": p or "(top level)", "objects": n, "bytes": b} for p, n, b in db.execute(
        "SELECT CASE WHEN instr(key, '/') > 0 THEN substr(key, 1, instr(key, '/')) ELSE '' END AS p, count(*), "
        "sum(size) FROM objects WHERE bucket=? AND NOT delete_marker GROUP BY p ORDER BY sum(size) DESC LIMIT 10",
        (bucket,))]
    small_bytes = q("SELECT coalesce(sum(size),0) FROM objects WHERE bucket=? AND size <= ? AND NOT delete_marker",
                    disk.small_threshold)[0]
    requests = versions + markers + parts            # a GET (or HEAD) per version, a HEAD per part
    lists = 0 if method == "inventory" else (versions + markers) // 1000 + 1
    egress = egress_cost(all_bytes, prices)
    request_cost = requests / 1000 * prices.get_per_1000 + lists / 1000 * prices.list_per_1000
    return {
        "bucket": bucket, "versioning": versioning or "Disabled", "method": method, "listed_at": listed_at,
        "objects": objects, "bytes": current_bytes, "versions": versions, "version_bytes": all_bytes,
        "delete_markers": markers, "multipart": multipart, "parts": parts, "over_5gib": huge,
        "written_last_30_days": recent, "storage_classes": classes,
        "needs_restore": sum(c["objects"] for c in classes if c["needs_restore"]),
        "histogram": histogram, "top_prefixes": top,
        "transfer_seconds": all_bytes / bandwidth if bandwidth else None,
        "egress_cost": egress, "request_cost": request_cost, "move_cost": egress + request_cost,
        "monthly_bill": sum(c["monthly"] for c in classes),
        "pocket_raw_bytes": int(small_bytes * disk.small_factor + (all_bytes - small_bytes) * disk.large_factor),
    }


def suggested_order(stats: list[dict]) -> list[str]:
    """Smallest and least written first (37signals' criticality ladder): rank by bytes
    plus rank by recent writes, ties by name."""
    by_bytes = {s["bucket"]: i for i, s in enumerate(sorted(stats, key=lambda s: s["version_bytes"]))}
    by_writes = {s["bucket"]: i for i, s in enumerate(sorted(stats, key=lambda s: s["written_last_30_days"]))}
    return sorted((s["bucket"] for s in stats), key=lambda b: (by_bytes[b] + by_writes[b], b))


def as_dict(prices: Prices) -> dict:
    return asdict(prices)
