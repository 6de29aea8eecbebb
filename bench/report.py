"""The markdown a benchmark run prints: the header bench/RESULTS.md needs (machine, date,
commit, the exact command), the box's ceilings, one table of every scenario against every
target with the ratios issue 14 and issue 11 set targets on, degraded reads and the
index's bytes per object version."""
from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys

from . import ceilings

# (column title, numerator target, denominator target)
RATIOS = [("Pocket / Swift", "pocket", "swift"), ("Pocket / SeaweedFS", "pocket", "seaweedfs"),
          ("nodes6 / embedded", "pocket-nodes6", "pocket"), ("pg / lmdb (both nodes6)", "pocket-pg", "pocket-nodes6"),
          ("pg2 / pg", "pocket-pg2", "pocket-pg")]


def machine() -> dict:
    """What the figures were measured on, and when, and from which commit."""
    def first(path: str, prefix: str) -> str:
        try:
            with open(path) as f:
                return next((line.split(":", 1)[1].strip() for line in f if line.startswith(prefix)), "")
        except OSError:
            return ""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        """'' when git or the repository's history is missing (an unpacked release)."""
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        except OSError:
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""
    mem_kib = first("/proc/meminfo", "MemTotal").split()[0] if first("/proc/meminfo", "MemTotal") else "0"
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name") or platform.machine(),
            "ram_gib": round(int(mem_kib) / 1024 / 1024, 1), "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
            "commit": (git("rev-parse", "--short", "HEAD") or "unknown (no git)")
            + (" + uncommitted changes" if git("status", "--porcelain") else ""),
            "command": "python -m bench.run " + shlex.join(sys.argv[1:])}


def unit(scenario: str) -> str:
    if scenario == "list-10k":
        return "s for 10,000 keys"
    return "MiB/s" if ("-1m-" in scenario or "-64m-" in scenario) else "ops/s"


def figure(row: dict | None) -> float | None:
    """The number a scenario is judged by: MiB/s, ops/s, or seconds for the LIST walk."""
    if row is None:
        return None
    u = unit(row["scenario"])
    return row["seconds"] if u.startswith("s ") else row["mib_per_s"] if u == "MiB/s" else row["ops_per_s"]


def speed_ratio(scenario: str, a: float | None, b: float | None) -> float | None:
    """a / b as a speed ratio: for the LIST walk (seconds) that is b's time over a's."""
    if not a or not b:
        return None
    return b / a if scenario == "list-10k" else a / b


def ratio(scenario: str, a: float | None, b: float | None) -> str:
    r = speed_ratio(scenario, a, b)
    return "—" if r is None else f"{r:.2f}"


def fmt(x: float | None, scenario: str) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}" if scenario == "list-10k" else f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def render(run: dict) -> str:
    m, targets = run["machine"], run["targets"]
    names = [t["name"] for t in targets]
    out = [f"# Pocket benchmark, {m['date']}", "",
           f"- machine: {m['cores']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, {m['kernel']}, Python {m['python']}; "
           f"load average at start {m['load']}",
           f"- commit: {m['commit']}",
           f"- command: `{m['command']}`",
           f"- each timed scenario {run['duration']:g} s, closed loop, c = concurrent requests; client and servers "
           "share the box's cores; LIST is one ListObjectsV2 walk in seconds (lower is better, ratios are speed)"]
    out += [f"- {t['name']}: {t['describe']}" for t in targets]
    out += [f"- {line}" for line in run["skipped"]]
    if run.get("ceilings"):
        out += ["", ceilings.markdown(run["ceilings"])]
    ratios = [(title, a, b) for title, a, b in RATIOS if a in names and b in names]
    out += ["", "| scenario | unit | " + " | ".join(names) + "".join(f" | {t}" for t, _, _ in ratios) + " |",
            "| --- | --- |" + " ---: |" * (len(names) + len(ratios))]
    for scenario in run["scenarios"]:
        got = {t["name"]: figure(next((r for r in t["rows"] if r["scenario"] == scenario), None)) for t in targets}
        cells = [fmt(got[n], scenario) for n in names] + [ratio(scenario, got[a], got[b]) for _, a, b in ratios]
        out.append(f"| {scenario} | {unit(scenario)} | " + " | ".join(cells) + " |")
    out += cpu_table(run, names, ratios)
    out += goals_table(run)
    errors = [f"{t['name']} {r['scenario']}: {r['errors']} failed requests{'; ' + r['notes'] if r['notes'] else ''}"
              for t in targets for r in t["rows"] + t.get("degraded", []) if r["errors"]]
    if errors:
        out += ["", "Failed requests (the figure counts successful ones only): " + "; ".join(errors) + "."]
    for t in targets:
        if t.get("degraded"):
            out += ["", f"Degraded reads, {t['name']}: {t['degraded_note']}", "",
                    "| scenario | unit | healthy | degraded | degraded / healthy |", "| --- | --- | ---: | ---: | ---: |"]
            for row in t["degraded"]:
                healthy = figure(next((r for r in t["rows"] if r["scenario"] == row["scenario"]), None))
                out.append(f"| {row['scenario']} | {unit(row['scenario'])} | {fmt(healthy, row['scenario'])} | "
                           f"{fmt(figure(row), row['scenario'])} | {ratio(row['scenario'], figure(row), healthy)} |")
    out += repair_table(run.get("repair"))
    sized = [t for t in targets if t.get("metadata")]
    if sized:
        out += ["", "Index size after the run (every table, as the backend reports it; fixed overhead dominates "
                "below a few thousand versions, and the LIST scenario makes 10,000):", "",
                "| target | backend | index bytes | object versions | bytes per version |", "| --- | --- | ---: | ---: | ---: |"]
        out += [f"| {t['name']} | {t['metadata']['backend']} | {t['metadata']['bytes']:,} | {t['metadata']['versions']:,} | "
                f"{t['metadata']['bytes_per_version']:,} |" for t in sized]
    return "\n".join(out) + "\n"


def cpu_table(run: dict, names: list[str], ratios: list[tuple[str, str, str]]) -> list[str]:
    """CPU milliseconds per request of every process of each target, while timed: what a
    loaded box distorts least."""
    cpu = {t["name"]: {r["scenario"]: r.get("server_cpu_ms_per_op") for r in t["rows"]} for t in run["targets"]}
    client = {s: sorted(r["client_cpu_ms_per_op"] for t in run["targets"] for r in t["rows"]
                        if r["scenario"] == s and "client_cpu_ms_per_op" in r) for s in run["scenarios"]}
    if not any(client.values()):
        return []
    out = ["", "CPU per request, ms (user + system while timed: of every process of each target, and of the "
           "client, its median over the targets). Ratios here are costs, lower is cheaper for the first:", "",
           "| scenario | client | " + " | ".join(names) + "".join(f" | {t}" for t, _, _ in ratios) + " |",
           "| --- |" + " ---: |" * (1 + len(names) + len(ratios))]
    for scenario in run["scenarios"]:
        got = {n: cpu[n].get(scenario) for n in names}
        mine = client[scenario]
        cells = [f"{mine[len(mine) // 2]:.2f}" if mine else "—"]
        cells += [f"{got[n]:.2f}" if got[n] is not None else "—" for n in names]
        cells += [f"{got[a] / got[b]:.2f}" if got[a] and got[b] else "—" for _, a, b in ratios]
        out.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return out


def repair_table(r: dict | None) -> list[str]:
    """bench.repair's figures: one disk of a loaded 6-node EC 4+2 cluster lost and rebuilt."""
    if not r:
        return []
    head = ["", "Repair (`bench.repair`: 6 node processes, EC 4+2; one node's disk wiped and started empty, "
            "then `pocket scrub` + `pocket repair`; CPU = the repair command's, start-up included, + every node's):", ""]
    if "failed" in r:
        return head + [f"failed, not measured: {r['failed']}"]
    return head + [
        "| data / objects | scrub on nodes MiB/s | fragments lost | rebuilt | repair MiB/s | CPU s | "
        "MiB/s per core used | to full redundancy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {r['mib']:,.0f} MiB / {r['objects']} | {r['scrub_node']:,.0f} | {r['missing']} | {r['rebuilt']:,.0f} MiB | "
        f"{r['repair_mibs']:.1f} | {r['repair_cpu']:.1f} | {r['repair_mibs_per_core']:.0f} | {r['to_full']:.1f} s |"
    ] + _repair_cpu_note(r)


def _repair_cpu_note(r: dict) -> list[str]:
    """Where the repair's CPU went, and the rate without the command's start-up (a run that
    rebuilds little is mostly start-up); runs recorded before the split have neither."""
    if "repair_cpu_split" not in r:
        return []
    split = r["repair_cpu_split"]
    return ["", f"CPU s: `pocket repair` {split['command']:.2f}, the node that lost its disk {split['lost_node']:.2f}, "
                f"the other nodes {split['other_nodes']:.2f}; a repair of the empty queue (start-up) "
                f"{r['startup_cpu']:.2f}, so {r['repair_mibs_per_core_after_startup']:.0f} MiB/s per core after start-up."]


def goals_table(run: dict) -> list[str]:
    """Issue 14's targets, judged on this run's figures (only those the run has inputs for)."""
    by = {t["name"]: {r["scenario"]: figure(r) for r in t["rows"]} for t in run["targets"]}

    def speed(a: str, b: str, scenario: str) -> float | None:
        return speed_ratio(scenario, by.get(a, {}).get(scenario), by.get(b, {}).get(scenario))

    goals = []   # (what, this run, needed, met)
    for c in ("c1", "c16"):
        r = speed("pocket", "swift", f"put-64m-{c}")
        if r is not None:
            goals.append((f"PUT 64 MiB {c}: Pocket / Swift", f"{r:.2f}", "≥ 2", r >= 2))
        cpu = (run.get("ceilings") or {}).get("md5_encode_all")
        got = by.get("pocket", {}).get(f"put-64m-{c}")
        if cpu and got:
            goals.append((f"PUT 64 MiB {c}: Pocket / (MD5 + 4+2 encode, every core)", f"{got:,.0f} / {cpu:,.0f} MiB/s",
                          "≥ 0.5", got / cpu >= 0.5))
    for scenario in ("put-4k-c16", "get-4k-c16", "delete-c16", "list-10k"):
        r = speed("pocket", "seaweedfs", scenario)
        if r is not None:
            goals.append((f"{scenario}: Pocket / SeaweedFS", f"{r:.2f}", "≥ 1", r >= 1))
    shape = [(speed("pocket-nodes6", "pocket", s), s) for s in run["scenarios"]]
    shape = [(r, s) for r, s in shape if r is not None]
    if shape:
        r, s = min(shape)
        goals.append(("every scenario: nodes6 / embedded (lowest)", f"{r:.2f} ({s})", "≥ 0.8", r >= 0.8))
    for t in run["targets"]:
        healthy = {r["scenario"]: figure(r) for r in t["rows"]}
        degraded = [(speed_ratio(row["scenario"], figure(row), healthy.get(row["scenario"])), row["scenario"])
                    for row in t.get("degraded", [])]
        degraded = [(r, s) for r, s in degraded if r is not None]
        if degraded:
            r, s = min(degraded)
            goals.append((f"GET with m disks down / healthy, {t['name']} (lowest)", f"{r:.2f} ({s})", "≥ 0.7", r >= 0.7))
    repair = run.get("repair") or {}
    if "repair_mibs_per_core" in repair:
        per_core = repair["repair_mibs_per_core"]
        goals.append(("repair: MiB/s rebuilt per core used", f"{per_core:.0f}", "≥ 200", per_core >= 200))
    if not goals:
        return []
    return ["", "Issue 14's targets on this run's figures:", "", "| target | this run | needed | met |",
            "| --- | ---: | ---: | --- |"] + [f"| {what} | {got} | {need} | {'yes' if met else 'no'} |"
                                               for what, got, need, met in goals]

