"""`pocket status`: disks, volumes, what is stored, what is at risk, and how durable it is.

Disks are up or down as the running gateway sees them (it is what serves clients); with
no gateway running, as this command could reach them. Usage comes from each disk's health.

Durability is estimated per storage policy with the standard Markov-chain model of an
erasure-coded group (independent disk failures at rate λ, repairs at rate μ = 1/MTTR,
MTTR much shorter than a disk's life). A volume of n = k+m disks loses data when m+1
of its disks fail before the first failure is repaired:

    MTTDL ≈ μ^m / (λ^(m+1) · n·(n-1)·…·(n-m))          (hours)
    λ = AFR / 8760 h,  μ = 1 / MTTR
    P(an object is lost within a year) ≈ 1 - exp(-8760 h / MTTDL)
    annual durability = 1 - P,  "nines" = -log10(P)

An object lives in one volume, so that is the per-object figure S3 quotes; the chance of
losing anything at all is about V times larger for V volumes of that width. MTTR is the
measured repair throughput applied to one disk's share of the stored bytes (at least one
hour, for noticing the failure and starting), or `repair.assumed_hours` until a repair
has been measured. The model ignores correlated failures (a whole node or rack at once,
a bad batch of disks) and latent bit rot found only by the next scrub, so treat it as
an upper bound and keep scrubbing.
"""
from __future__ import annotations

import asyncio
import math
import time

from ..policy_spec import parse_policy
from ..durability.queue import REPAIR_META, SCRUB_META
from ..index import leases
from ..index.versions import is_marker
from .cluster import ToolCluster, gateway_view

HOURS_PER_YEAR = 8760.0
FORMULA = ("MTTDL ≈ μ^m / (λ^(m+1) · n(n-1)…(n-m)) with λ = AFR/8760 h, μ = 1/MTTR, n = k+m; "
           "P(object lost in a year) ≈ 1 - exp(-8760 h / MTTDL); durability = 1 - P")


def mttdl_hours(k: int, m: int, afr: float, mttr_hours: float) -> float:
    n = k + m
    lam = afr / HOURS_PER_YEAR
    mu = 1.0 / mttr_hours
    falling = math.prod(n - i for i in range(m + 1))
    return mu ** m / (lam ** (m + 1) * falling)


def annual_loss_probability(k: int, m: int, afr: float, mttr_hours: float) -> float:
    return -math.expm1(-HOURS_PER_YEAR / mttdl_hours(k, m, afr, mttr_hours))


def durability(cfg, volumes: dict, stored_raw: int, disks: int, repair_stats: dict | None) -> dict:
    afr = cfg.repair.disk_afr
    throughput = (repair_stats or {}).get("throughput") or 0.0
    if throughput > 0 and disks:
        per_disk = stored_raw / disks
        mttr = max(1.0, per_disk / throughput / 3600.0)
        basis = (f"measured repair throughput {throughput / 2**20:.1f} MiB/s over "
                 f"{per_disk / 2**30:.2f} GiB per disk (at least 1 h)")
    else:
        mttr = cfg.repair.assumed_hours
        basis = "assumed (repair.assumed_hours); no repair measured yet"
    policies = {}
    for name, spec in cfg.policies.items():
        k, m = parse_policy(spec)
        p = annual_loss_probability(k, m, afr, mttr)
        count = sum(1 for v in volumes.values() if v["width"] == k + m)
        policies[name] = {
            "policy": spec, "k": k, "m": m, "mttdl_years": mttdl_hours(k, m, afr, mttr) / HOURS_PER_YEAR,
            "annual_loss_probability": p, "annual_durability": 1.0 - p,
            "nines": round(-math.log10(p), 2) if p > 0 else None,
            "volumes": count, "annual_any_loss_probability": -math.expm1(count * math.log1p(-p)) if p < 1 else 1.0,
        }
    return {"formula": FORMULA, "disk_afr": afr, "mttr_hours": round(mttr, 3), "mttr_basis": basis,
            "policies": policies}


async def collect(tc: ToolCluster) -> dict:
    cfg, cluster, index, queue = tc.cfg, tc.cluster, tc.index, tc.queue
    node_of = {i.disk_id: i for i in cluster.infos.values()}
    gateway = await gateway_view(cfg)
    gateway_down = set(gateway.get("disks_down", [])) if gateway else None

    def up(disk_id: str) -> bool:
        """The running gateway's view when there is one (it is what serves clients), else ours."""
        return disk_id not in gateway_down if gateway_down is not None else cluster.is_up(disk_id)
    disks = []
    for disk_id in cluster.disks:
        usage = cluster.usage.get(disk_id) or {}
        disks.append({"id": disk_id, "node": node_of[disk_id].node_id, "zone": node_of[disk_id].zone,
                      "up": up(disk_id), "reachable": cluster.is_up(disk_id),
                      "state": cluster.states.get(disk_id, {}).get("state") or ("up" if up(disk_id) else "down"),
                      "opened": "folder" if disk_id in tc.direct else "node",
                      "total": usage.get("total"), "used": usage.get("used"), "free": usage.get("free"),
                      "capacity": usage.get("capacity"), "quota_used": usage.get("quota_used")})
    volumes = [{"id": v["id"], "width": v["width"], "disks": v["disks"],
                "disks_down": [d for d in v["disks"] if not up(d)]} for v in cluster.volumes.values()]
    objects = noncurrent = markers = stored = raw = 0
    by_policy: dict[str, dict] = {}
    by_shape: dict[str, int] = {}   # object versions (current or not) per k+m
    for bucket in index.list_buckets():
        for version in index.iter_versions(bucket["name"]):
            record = version.record
            if is_marker(record):
                markers += 1
                continue
            if version.is_latest:
                objects += 1
            else:
                noncurrent += 1
            stored += record["size"]
            raw += record["size"] * (record["k"] + record["m"]) / record["k"]
            p = by_policy.setdefault(record.get("policy", "?"), {"objects": 0, "bytes": 0})
            p["objects"] += 1
            p["bytes"] += record["size"]
            shape = f"{record['k']}+{record['m']}"
            by_shape[shape] = by_shape.get(shape, 0) + 1
            if (objects + noncurrent) % 1000 == 0:
                await asyncio.sleep(0)
    at_risk = queue.at_risk()
    shapes = set(at_risk) | set(by_shape) | {"%d+%d" % parse_policy(s) for s in cfg.policies.values()}
    risk_rows = []
    for shape in sorted(shapes):
        k, m = (int(x) for x in shape.split("+"))
        counts = at_risk.get(shape, {})
        for left in range(k + m, -1, -1):
            if left in counts or k <= left <= k + m:
                count = counts.get(left, 0)
                if left == k + m:   # everything not queued is whole
                    count = max(0, by_shape.get(shape, 0) - sum(counts.values()))
                risk_rows.append({"shape": shape, "fragments_left": left, "spare": left - k,
                                  "objects": count, "lost": left < k})
    scrub = queue.progress(SCRUB_META)
    repair = queue.progress(REPAIR_META)
    with index.read() as ops:
        held = leases.holders(ops, leases.NAMES)
    return {
        "time": time.time(),
        "gateway": {"running": gateway is not None, "listen": cfg.gateway.listen},
        "leases": {name: lease for name, lease in held.items() if lease},   # which gateway runs what
        "disks": disks,
        "disks_up": sum(d["up"] for d in disks),
        "disks_down": [d["id"] for d in disks if not d["up"]],
        "volumes": volumes,
        "buckets": len(index.list_buckets()),
        "objects": objects,
        "noncurrent_versions": noncurrent,
        "delete_markers": markers,
        "bytes": stored,
        "raw_bytes_estimate": int(raw),
        "by_policy": by_policy,
        "repair_queue": queue.length(),
        "at_risk": risk_rows,
        "objects_at_risk": sum(r["objects"] for r in risk_rows if r["spare"] < int(r["shape"].split("+")[1])),
        "last_scrub": scrub,
        "repair_stats": repair,
        "durability": durability(cfg, cluster.volumes, int(raw), len(disks), repair),
    }


def size(n) -> str:
    """Bytes as an operator reads them ("?" when unknown)."""
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def render(status: dict) -> str:
    gw = status["gateway"]
    lines = [f"Gateway: {'running' if gw['running'] else 'not running'} ({gw['listen']})",
             f"Disks: {status['disks_up']} of {len(status['disks'])} up"
             + (f" (down: {', '.join(status['disks_down'])})" if status["disks_down"] else "")]
    for d in status["disks"]:
        lines.append(f"  {d['id']:<10} {d['node']:<8} {d['state'] if d['up'] else d['state'].upper():<9} "
                     f"used {size(d['used']):>10}  free {size(d['free']):>10}"
                     + (f"  (quota {size(d['capacity'])}, {size(d['quota_used'])} used)" if d.get("capacity") else ""))
    by_gateway: dict[str, dict[str, list[str]]] = {}   # gateway -> worker ("" if one process) -> leases
    for name, lease in sorted(status.get("leases", {}).items()):
        if lease["expires"] > status["time"]:
            gateway, _, worker = lease["holder"].partition("#")    # storage/leased.py holder_id
            by_gateway.setdefault(gateway, {}).setdefault(worker, []).append(name)
    for gateway, by_worker in sorted(by_gateway.items()):
        names = sorted(n for held in by_worker.values() for n in held)
        workers = "; ".join(f"worker {w}: {', '.join(held)}" for w, held in sorted(by_worker.items()) if w)
        lines.append(f"Gateway {gateway} runs {', '.join(names)}" + (f" ({workers})" if workers else ""))
    degraded = [v for v in status["volumes"] if v["disks_down"]]
    lines.append(f"Volumes: {len(status['volumes'])} ({len(degraded)} with a disk down)")
    lines.append(f"Objects: {status['objects']} in {status['buckets']} buckets, {size(status['bytes'])} "
                 f"(about {size(status['raw_bytes_estimate'])} on disk)")
    if status["noncurrent_versions"] or status["delete_markers"]:
        lines.append(f"  plus {status['noncurrent_versions']} noncurrent versions (in the bytes above) and "
                     f"{status['delete_markers']} delete markers")
    lines.append(f"Repair queue: {status['repair_queue']} object versions")
    for r in status["at_risk"]:
        label = "LOST: fewer than k" if r["lost"] else f"can lose {r['spare']} more"
        lines.append(f"  {r['shape']}: {r['fragments_left']} fragments left ({label}): {r['objects']} objects")
    scrub = status["last_scrub"]
    if scrub:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(scrub["started"]))
        state = "running" if scrub.get("running") else "finished"
        lines.append(f"Last scrub: {state}, started {when}: {scrub['archives']} archives, "
                     f"{size(scrub['bytes_verified'])} of {size(scrub['bytes_total'])} verified, "
                     f"{scrub['corrupt']} corrupt, {scrub['missing']} missing, "
                     f"{scrub['orphans_removed']} orphans removed")
    else:
        lines.append("Last scrub: never")
    dur = status["durability"]
    lines.append(f"Durability (disk AFR {dur['disk_afr']:.1%}, repair time {dur['mttr_hours']:.1f} h, "
                 f"{dur['mttr_basis']}):")
    for name, p in dur["policies"].items():
        lines.append(f"  {name} ({p['policy']}): {p['nines']} nines per object per year "
                     f"(P(loss) ≈ {p['annual_loss_probability']:.2e}; {p['volumes']} volumes)")
    lines.append(f"  model: {dur['formula']}")
    return "\n".join(lines)
