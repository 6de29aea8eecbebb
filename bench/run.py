"""The whole benchmark in one command: every target started, measured with the same
scenarios and stopped, one after the other, plus the box's own ceilings, in one run.

Targets: `null` (the client's ceiling), Pocket in each `pocket up` shape (`pocket`,
`pocket-nodes6`, `pocket-pg`, `pocket-pg2`), and the peers `seaweedfs` and `swift`.
A target whose software is missing is skipped with a line saying what to install; one
that fails to start is reported and the run goes on. The report (markdown) goes to
stdout and --out, every figure with latencies to --json.

    python -m bench.run --targets all --duration 10 --out results.md
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time

from . import ceilings, report
from .load import SCENARIOS, run_scenarios
from .peers import Unavailable, null, pocket, seaweedfs, swift_ec
from .proc_cpu import CpuMeter

TARGETS = ["null", *pocket.SHAPES, "seaweedfs", "swift"]
DEGRADED_DISKS = 2   # m of the default ec:4+2: node processes (one disk each) killed for degraded reads


def start(name: str, work: str):
    if name == "null":
        return null.start(work)
    if name == "seaweedfs":
        return seaweedfs.start(work)
    if name == "swift":
        return swift_ec.start(work)
    return pocket.start(name, work)


def degrade(target, work: str) -> str:
    """Kill m node processes of a `pocket up --nodes 6` target (data under `work`): m disks
    of every volume down."""
    victims = sorted(pocket.node_pids(target))[:DEGRADED_DISKS]
    if len(victims) < DEGRADED_DISKS:
        raise RuntimeError(f"found {len(victims)} node processes under pocket up (pid {target.pid}), "
                           f"not the {DEGRADED_DISKS} to stop for degraded reads")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    _wait_disks_down(work, len(victims))
    return (f"{len(victims)} of its 6 node processes (one disk each) killed, so every EC 4+2 volume has "
            f"{len(victims)} disks down and reads decode from parity; the same objects as the healthy GETs")


def _wait_disks_down(work: str, count: int, timeout: float = 60.0) -> None:
    """Until the gateway's workers say `count` disks are down (several answers in a row: each
    may come from another worker): timed before that, the first degraded reads still went to
    the dead nodes and waited for their refusals, and the figure measured the heartbeat."""
    from storage import config as config_mod
    from storage.tools.cluster import gateway_ready
    cfg = config_mod.load(os.path.join(work, "data", "pocket.toml"))
    deadline, in_a_row = time.monotonic() + timeout, 0
    while in_a_row < 6:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway did not report {count} disks down within {timeout:.0f} s")
        view = gateway_ready(cfg)     # its JSON, 503 (too few disks up) included
        in_a_row = in_a_row + 1 if view and len(view["disks_down"]) >= count else 0
        time.sleep(0.1)


def measure(name: str, work: str, names: list[str], duration: float, with_degraded: bool) -> dict:
    """One target: started, every scenario run against it (CPU metered), stopped; its figures."""
    shutil.rmtree(work, ignore_errors=True)   # a fresh server every run: a kept cluster has old ports in its config
    t0 = time.monotonic()
    target = start(name, work)
    print(f"{name}: up in {time.monotonic() - t0:.1f} s at {target.endpoint}", file=sys.stderr)
    result = {"name": name, "describe": target.describe, "endpoint": target.endpoint, "rows": []}
    meter = CpuMeter(target.processes)
    try:
        result["rows"] = asyncio.run(run_scenarios(target.endpoint, target.access_key, target.secret_key, names,
                                                   duration, label=f"{name} ", meter=meter))
        gets = [n for n in names if n.startswith("get-")]
        if with_degraded and name == "pocket-nodes6" and gets:
            try:   # the healthy figures stay whatever happens here
                result["degraded_note"] = degrade(target, work)
                result["degraded"] = asyncio.run(run_scenarios(target.endpoint, target.access_key, target.secret_key,
                                                               gets, duration, label=f"{name} degraded ", meter=meter))
            except (Exception, SystemExit) as e:
                print(f"{name}: degraded reads not measured: {type(e).__name__}: {e}", file=sys.stderr)
                result.pop("degraded", None)
    finally:
        target.stop()
    result.update(target.info)
    return result


def measure_repair(size_gib: float, work: str) -> dict:
    """bench.repair's disk loss and rebuild (its progress lines to stderr: stdout is the report)."""
    from . import repair
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return repair.measure(size_gib, work, network_scrub_too=False)
    except (Exception, SystemExit) as e:
        print(f"repair: failed, not measured: {type(e).__name__}: {e}", file=sys.stderr)
        return {"failed": f"{type(e).__name__}: {str(e).strip()[-1500:]}".replace("\n", " ")}


def measure_targets(run: dict, targets: list[str], names: list[str], args, work: str) -> list[str]:
    """Measure each target into `run`; returns the folders kept because the target failed
    or had failed requests (a full run writes several GiB per target, so the others go
    as soon as they are measured, unless --work asked to keep everything)."""
    kept = []
    for name in targets:
        folder, trouble = os.path.join(work, name), False
        try:
            run["targets"].append(measure(name, folder, names, args.duration, not args.no_degraded))
            trouble = any(r["errors"] for r in run["targets"][-1]["rows"])
        except Unavailable as e:
            run["skipped"].append(str(e))
            print(e, file=sys.stderr)
        except (Exception, SystemExit) as e:   # one target failing must not lose the others' figures
            # (bench.load ends with SystemExit when it cannot create its fixtures)
            line = f"{name}: failed, not measured: {type(e).__name__}: {str(e).strip()[-1500:]}"
            run["skipped"].append(line.replace("\n", " "))
            print(line, file=sys.stderr)
            trouble = True
        finally:   # interrupted (Ctrl-C, SIGTERM): removed too
            if not args.work and not trouble:
                shutil.rmtree(folder, ignore_errors=True)
            elif not args.work:
                kept.append(folder)
                print(f"{name}: its folder (logs, data) is kept for a look: {folder}", file=sys.stderr)
    return kept


def _interrupted(signum, frame) -> None:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so every started server is stopped:
    they run in sessions of their own and would otherwise outlive the run."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="all", help=f"comma-separated, or 'all': {','.join(TARGETS)}")
    p.add_argument("--scenarios", default="all", help=f"comma-separated, or 'all': {','.join(SCENARIOS)}")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per timed scenario")
    p.add_argument("--out", help="also write the markdown report to this file")
    p.add_argument("--json", help="write every figure (latencies too) as JSON to this file")
    p.add_argument("--work", help="folder for the servers' data, kept after the run for a look "
                   "(emptied per target at its start; default: a temp folder, removed as the run goes)")
    p.add_argument("--no-ceilings", action="store_true", help="skip measuring the disk and CPU ceilings")
    p.add_argument("--no-degraded", action="store_true", help="skip the degraded GETs on pocket-nodes6")
    p.add_argument("--repair-gib", type=float, default=1.0,
                   help="GiB to load for the repair measurement (bench.repair: a disk of 6 lost and rebuilt); 0 skips it")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    targets = TARGETS if args.targets == "all" else [t.strip() for t in args.targets.split(",") if t.strip()]
    names = SCENARIOS if args.scenarios == "all" else [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for kind, chosen, known in (("target", targets, TARGETS), ("scenario", names, SCENARIOS)):
        if unknown := [x for x in chosen if x not in known]:
            p.error(f"unknown {kind}(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    work = args.work or tempfile.mkdtemp(prefix="pocket-bench-")
    os.makedirs(work, exist_ok=True)
    if not args.work:
        os.chmod(work, 0o711)   # under root, `pocket up --postgres` runs PostgreSQL as another user who must reach its folder
    kept: list[str] = []
    run = {"machine": report.machine(), "duration": args.duration, "scenarios": names, "targets": [], "skipped": []}
    try:
        if not args.no_ceilings:
            run["ceilings"] = ceilings.measure_all(os.path.join(work, "ceilings"), seconds=min(1.0, args.duration),
                                                   write_mib=256 if args.duration >= 5 else 32)
        kept = measure_targets(run, targets, names, args, work)
        if args.repair_gib > 0:
            run["repair"] = measure_repair(args.repair_gib, os.path.join(work, "repair"))
    finally:
        if not args.work:
            for entry in os.listdir(work):
                if os.path.join(work, entry) not in kept:
                    shutil.rmtree(os.path.join(work, entry), ignore_errors=True)
            if not kept:
                os.rmdir(work)
    text = report.render(run)
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(run, f, indent=2)
    return 0 if run["targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
