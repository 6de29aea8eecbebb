"""The benchmark report's arithmetic: ratios are speeds (LIST's seconds inverted) and
issue 14's targets are judged on the right figures. A wrong ratio here would publish
a wrong comparison in bench/RESULTS.md."""
from __future__ import annotations

from bench import report


def row(scenario: str, value: float, errors: int = 0) -> dict:
    """A summary row as bench.load makes it, with `value` in the scenario's unit."""
    r = {"scenario": scenario, "ops_per_s": 0.0, "mib_per_s": 0.0, "seconds": 0.0, "errors": errors, "notes": ""}
    key = {"ops/s": "ops_per_s", "MiB/s": "mib_per_s"}.get(report.unit(scenario), "seconds")
    r[key] = value
    return r


def target(name: str, figures: dict[str, float], **extra) -> dict:
    return {"name": name, "describe": name, "rows": [row(s, v) for s, v in figures.items()], **extra}


def run_of(*targets: dict, **extra) -> dict:
    scenarios = list(dict.fromkeys(r["scenario"] for t in targets for r in t["rows"]))
    return {"machine": {"date": "d", "cores": 2, "cpu": "c", "ram_gib": 1, "kernel": "k", "python": "3", "load": "0",
                        "commit": "abc", "command": "python -m bench.run"},
            "duration": 1.0, "scenarios": scenarios, "targets": list(targets), "skipped": [], **extra}


def cells(text: str, first: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_ratios_are_speeds_and_list_seconds_are_inverted():
    text = report.render(run_of(
        target("pocket", {"put-64m-c1": 300.0, "put-4k-c16": 500.0, "list-10k": 0.5}),
        target("seaweedfs", {"put-64m-c1": 100.0, "put-4k-c16": 1000.0, "list-10k": 0.25}),
        target("swift", {"put-64m-c1": 150.0, "put-4k-c16": 50.0, "list-10k": 2.0})))
    # columns: unit, pocket, seaweedfs, swift, Pocket / Swift, Pocket / SeaweedFS
    assert cells(text, "put-64m-c1")[4:6] == ["2.00", "3.00"]
    assert cells(text, "put-4k-c16")[4:6] == ["10.00", "0.50"]
    assert cells(text, "list-10k")[4:6] == ["4.00", "0.50"], "LIST: half the seconds is twice the speed"


def test_issue_14_targets_are_judged_on_the_right_figures():
    ceilings = {"cores": 2, "write_fsync_4mib": 1, "write_fsync_end": 1, "md5_core": 1, "md5_all": 1,
                "encode_core": 1, "encode_all": 1, "md5_encode_core": 1, "md5_encode_all": 500.0}
    nodes6 = target("pocket-nodes6", {"put-64m-c1": 270.0, "get-4k-c1": 700.0},
                    degraded=[row("get-4k-c1", 420.0)], degraded_note="two nodes killed")
    text = report.render(run_of(
        target("pocket", {"put-64m-c1": 300.0, "get-4k-c1": 1000.0}),
        nodes6, target("swift", {"put-64m-c1": 160.0, "get-4k-c1": 100.0}),
        ceilings=ceilings, repair={"mib": 1, "objects": 1, "scrub_node": 1, "missing": 1, "rebuilt": 300,
                                   "repair_mibs": 100.0, "repair_cpu": 1.2, "repair_mibs_per_core": 250.0,
                                   "to_full": 3.0}))
    assert cells(text, "PUT 64 MiB c1: Pocket / Swift") == ["1.88", "≥ 2", "no"]
    assert cells(text, "PUT 64 MiB c1: Pocket / (MD5 + 4+2 encode, every core)") == ["300 / 500 MiB/s", "≥ 0.5", "yes"]
    assert cells(text, "every scenario: nodes6 / embedded (lowest)") == ["0.70 (get-4k-c1)", "≥ 0.8", "no"]
    assert cells(text, "GET with m disks down / healthy, pocket-nodes6 (lowest)") == ["0.60 (get-4k-c1)", "≥ 0.7", "no"]
    assert cells(text, "repair: MiB/s rebuilt per core used") == ["250", "≥ 200", "yes"]
    assert "Pocket / SeaweedFS" not in text, "no SeaweedFS in the run: no ratio to it"


def test_repair_cpu_is_split_by_process_and_given_without_start_up():
    repair = {"mib": 1, "objects": 1, "scrub_node": 1, "missing": 1, "rebuilt": 300, "repair_mibs": 100.0,
              "repair_cpu": 2.0, "repair_mibs_per_core": 150.0, "to_full": 3.0,
              "repair_cpu_split": {"command": 1.5, "lost_node": 0.25, "other_nodes": 0.25},
              "startup_cpu": 0.5, "repair_mibs_per_core_after_startup": 200.0}
    text = report.render(run_of(target("pocket", {"put-64m-c1": 300.0}), repair=repair))
    assert ("CPU s: `pocket repair` 1.50, the node that lost its disk 0.25, the other nodes 0.25; a repair of "
            "the empty queue (start-up) 0.50, so 200 MiB/s per core after start-up.") in text
    assert cells(text, "repair: MiB/s rebuilt per core used") == ["150", "≥ 200", "no"], \
        "the target is judged with the start-up counted"
    older = {k: v for k, v in repair.items() if k not in ("repair_cpu_split", "startup_cpu",
                                                         "repair_mibs_per_core_after_startup")}
    assert "CPU s:" not in report.render(run_of(target("pocket", {"put-64m-c1": 300.0}), repair=older))
