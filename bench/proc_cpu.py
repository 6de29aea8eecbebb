"""CPU seconds used by a server's processes, read from /proc.

On a box shared with other work, requests per second measure the box's load as much as
the server; the CPU a server spends per request does not (much). A run samples every
process of a target (the processes it started, and theirs) before and after each timed
scenario, and the client's own CPU with them.
"""
from __future__ import annotations

import os
import time
from typing import Callable

TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (None once the process is gone):
    `[1]` is the parent pid, `[11]`..`[14]` utime, stime, cutime, cstime in ticks (fields 4 on of
    stat(5)). The name is cut at its last ")", since it may hold spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one live process (0 once it is gone)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS if fields else 0.0


class CpuMeter:
    """(server CPU s, client CPU s) readings; `roots` gives the target's top processes."""

    def __init__(self, roots: Callable[[], list[int]]):
        self.roots = roots

    def read(self) -> tuple[float, float]:
        pids = {p for root in self.roots() for p in tree(root)}
        return sum(cpu_seconds(p) for p in pids), time.process_time()
