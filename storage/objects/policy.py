"""A named storage policy (`ec:4+2`, `replica:3`) as the write path uses it: its coder and
the write quorum, so no caller computes `k + 1` or builds a codec itself."""
from __future__ import annotations

from dataclasses import dataclass

from ..codec import Codec
from ..policy_spec import parse_policy


@dataclass(frozen=True)
class Policy:
    name: str
    spec: str
    codec: Codec
    quorum: int

    @classmethod
    def parse(cls, name: str, spec: str, quorum: int | None = None) -> "Policy":
        """A quorum given in the config is capped at `k + m`; by default it is `k + 1`."""
        k, m = parse_policy(spec)
        return cls(name, spec, Codec(k, m), min(k + m, quorum or k + 1))
