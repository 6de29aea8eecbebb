"""Storage policy names (`ec:4+2`, `replica:3`) parsed into (k, m).

Apart from codec.py, whose import loads ISA-L and zfec (~30 ms of CPU): every config load
validates the policies (config_rules.py), and a command that never codes (`pocket migrate
verify --quick`, `status`) should not pay for the coder to read its config.
"""
from __future__ import annotations


def parse_policy(spec: str) -> tuple[int, int]:
    """`ec:4+2` -> (4, 2); `replica:3` -> (1, 2)."""
    kind, _, shape = spec.partition(":")
    k = m = -1
    try:
        if kind == "ec":
            k, m = (int(x) for x in shape.split("+"))
        elif kind == "replica":
            k, m = 1, int(shape) - 1
    except ValueError:
        pass
    if k >= 1 and m >= 0 and k + m <= 256:
        return k, m
    raise ValueError(f"bad storage policy {spec!r}: expected 'ec:K+M' (e.g. ec:4+2) or 'replica:R'")
