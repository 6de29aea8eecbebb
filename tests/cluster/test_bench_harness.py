"""The benchmark harness keeps working: `python -m bench.run` end to end, in seconds.

Benchmarks are not timed tests (issue 14): this runs one tiny scenario pair against
Pocket and the null server, with the box's ceilings and a small disk loss and repair,
and checks the report a reader relies on: the header RESULTS.md needs, a figure above
zero for every target and scenario, CPU per request, the repair's rate and the index's
bytes per version. A peer that is not
installed must be skipped with a line saying what to install, never end the run.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from .harness import REPO

SCENARIOS = ["put-4k-c1", "get-4k-c1"]


def bench_run(*args: str, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def table_rows(markdown: str, first_column: str) -> dict[str, list[str]]:
    """Rows of the markdown table whose header starts with `first_column` (one or more cells), by first cell."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_run_measures_pocket_and_the_client_ceiling(tmp_path):
    out, as_json = tmp_path / "results.md", tmp_path / "results.json"
    done = bench_run("--targets", "null,pocket", "--scenarios", ",".join(SCENARIOS), "--duration", "0.3",
                     "--repair-gib", "0.02", "--work", str(tmp_path / "work"), "--out", str(out), "--json", str(as_json))
    assert done.returncode == 0, done.stdout + done.stderr
    report = out.read_text()
    assert report == done.stdout, "the report printed and the one written differ"
    for header in ("- machine: ", "- commit: ", "- command: `python -m bench.run --targets null,pocket"):
        assert header in report, f"{header!r} missing from the header:\n{report}"
    assert re.search(r"- machine: \d+ cores .*GiB RAM, Linux .*, Python 3\.", report)

    rows = table_rows(report, "scenario")
    assert rows["scenario"][:3] == ["unit", "null", "pocket"]
    for scenario in SCENARIOS:
        unit, null, pocket = rows[scenario][:3]
        assert unit == "ops/s"
        assert number(null) > 0 and number(pocket) > 0, f"{scenario}: {rows[scenario]}"

    cpu = table_rows(report.split("CPU per request, ms")[1], "scenario")
    assert cpu["scenario"][:3] == ["client", "null", "pocket"]
    for scenario in SCENARIOS:
        assert number(cpu[scenario][0]) > 0 and number(cpu[scenario][2]) > 0, \
            f"no CPU measured for the client or pocket's {scenario}: {cpu[scenario]}"

    box = table_rows(report, "box ceiling")
    for name in ("sequential write, fsync every 4 MiB", "MD5", "4+2 encode as Pocket runs it, 1 MiB segments",
                 "zfec 4+2 encode (before session 8)"):
        assert number(box[name][0]) > 0, f"{name}: {box[name]}"
    assert number(box["MD5"][1]) > 0, "MD5 with every core busy was not measured"

    sizes = table_rows(report, "target | backend")
    backend, index_bytes, versions, per_version = sizes["pocket"]
    assert backend == "lmdb" and number(versions) >= 1 and number(per_version) > 0

    repair = table_rows(report, "data / objects")
    row, = [v for k, v in repair.items() if k not in ("data / objects", "---")]
    scrub, lost, rebuilt, mib_s, cpu, per_core, to_full = row
    assert int(lost) > 0 and number(rebuilt.split()[0]) > 0 and number(mib_s) > 0 and number(per_core) > 0, row

    goal = table_rows(report, "target | this run")["repair: MiB/s rebuilt per core used"]
    assert number(goal[0]) > 0 and goal[1] == "≥ 200" and goal[2] in ("yes", "no"), goal

    figures = json.loads(as_json.read_text())
    for target in figures["targets"]:
        assert [r["scenario"] for r in target["rows"]] == SCENARIOS
        assert all(r["errors"] == 0 and r["ops"] > 0 for r in target["rows"]), target["rows"]


def test_a_peer_that_is_not_installed_is_skipped_with_what_to_install(tmp_path):
    """No Swift on the PATH (as on CI): the run goes on with the other targets and says why."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}
    done = bench_run("--targets", "swift,null", "--scenarios", "put-4k-c1", "--duration", "0.3", "--no-ceilings",
                     "--repair-gib", "0", "--work", str(tmp_path / "work"), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "- swift: not installed; run scripts/install-bench-tools" in done.stdout
    rows = table_rows(done.stdout, "scenario")
    assert rows["scenario"][:2] == ["unit", "null"], "a skipped peer must not get a column"
    assert number(rows["put-4k-c1"][1]) > 0


def test_chaos_soak_runs_and_checks_what_it_reads():
    """`python -m bench.chaos` for a few seconds: writers against a cluster whose nodes and
    gateway are being killed and restarted, every read checked against what its key may hold."""
    done = subprocess.run([sys.executable, "-m", "bench.chaos", "--duration", "6", "--writers", "2", "--seed", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = {line.split(None, 1)[1]: int(line.split(None, 1)[0]) for line in done.stdout.splitlines()
              if line.strip() and line.split(None, 1)[0].isdigit()}
    assert sum(n for what, n in counts.items() if what.startswith("chaos: ")) >= 1, done.stdout
    assert counts.get("put ok", 0) > 0 and counts.get("final: one state", 0) > 0, done.stdout
    assert done.stdout.rstrip().endswith("OK: every read returned a state its key could hold")
