"""The servers a benchmark run measures, each started and stopped by the harness.

Every starter takes a work folder of its own and returns a `Target` (where to send S3
requests, with which keys, and how to stop it), or raises `Unavailable` saying what to
install when the peer's software is missing, so a run without Swift still measures the
rest. Everything listens on free ports of 127.0.0.1 and keeps its data in the folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


class Unavailable(Exception):
    """This peer cannot run on this machine; the message says what to install."""


@dataclass
class Target:
    name: str
    endpoint: str                 # several gateways: comma-separated (bench.load spreads requests)
    access_key: str
    secret_key: str
    stop: Callable[[], None]
    describe: str = ""            # one line for the report: version, shape
    info: dict = field(default_factory=dict)   # measured on the way down (metadata bytes...)
    pid: int = 0                  # the process the harness started (its children are the target's too)
    roots: list[int] = field(default_factory=list)   # every process tree serving it, when more than `pid`'s

    def processes(self) -> list[int]:
        """Top processes whose trees do the target's work (for CPU accounting)."""
        return self.roots or [self.pid]
