"""Free ports on 127.0.0.1 for the processes a run starts.

A port found free is not reserved, so runs start at a random place in 20000-32000
(below Linux's ephemeral range, where outgoing connections take theirs) and check that
every port of a run binds; `pocket up` needs consecutive ones (gateways, nodes, index)."""
from __future__ import annotations

import random
import socket

_FROM, _TO = 20000, 32000


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_run(n: int) -> int:
    """A port p with p..p+n-1 all free."""
    for _ in range(200):
        base = random.randrange(_FROM, _TO - n)
        if all(bindable(p) for p in range(base, base + n)):
            return base
    raise RuntimeError(f"no run of {n} free ports found in {_FROM}-{_TO}")


def free_ports(n: int) -> list[int]:
    return [free_run(1) for _ in range(n)]
