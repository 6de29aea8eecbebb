"""Where each migrating bucket stands: the state machine an operator walks, kept in the index.

One record per Pocket bucket under migration, in the index's meta table (`migrate/<bucket>`),
plus a generation number (`migrate/generation`) bumped by every change. The gateway compares
the generation on each request (one small read) and reloads the records when it moved, so a
transition made by a one-shot `pocket migrate` process beside a running gateway takes effect
at once. The record is small (no per-object data: that lives in index/migrations.py).

    planned -> dual-write -> backfilled -> verified -> cutover -> detached
    rollback: dual-write | backfilled | verified | cutover  ->  dual-write
              planned | dual-write: already S3-authoritative, a no-op that says so

Before cutover the source is authoritative; from cutover on, Pocket is (and still mirrors
every write to the source until detach, so a rollback loses nothing). A rollback lands in
dual-write: the bucket must be backfilled and verified again (fast when nothing changed)
before the next cutover.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

PLANNED, DUAL_WRITE, BACKFILLED, VERIFIED, CUTOVER, DETACHED = (
    "planned", "dual-write", "backfilled", "verified", "cutover", "detached")
STATES = (PLANNED, DUAL_WRITE, BACKFILLED, VERIFIED, CUTOVER, DETACHED)
ROLLBACK = "rollback"

# Allowed edges: (from, to). Re-running copy in backfilled/verified, or verify in verified,
# keeps the state (the commands call `transition` only when the state should move).
EDGES = {
    (PLANNED, DUAL_WRITE),
    (DUAL_WRITE, BACKFILLED),
    (BACKFILLED, VERIFIED),
    (VERIFIED, CUTOVER),
    (CUTOVER, DETACHED),
    # a verify that finds mismatches after `verified` sends the bucket back to backfilled
    (VERIFIED, BACKFILLED),
} | {(s, DUAL_WRITE) for s in (BACKFILLED, VERIFIED, CUTOVER)}   # rollback

SOURCE_AUTHORITATIVE = (PLANNED, DUAL_WRITE, BACKFILLED, VERIFIED)
ROUTED = (DUAL_WRITE, BACKFILLED, VERIFIED, CUTOVER)     # the gateway writes both sides

_RECORD = "migrate/"
_GENERATION = "migrate/generation"


class MigrationError(Exception):
    """A command or transition that cannot go ahead; the message says why and what to do."""


@dataclass
class Source:
    """How to reach the source bucket. Credentials are not here (see credentials.py):
    by default they come from the standard AWS chain of whichever process talks to the source."""
    bucket: str
    endpoint: str | None = None          # None: AWS itself
    region: str | None = None            # None: as boto3 resolves it
    profile: str | None = None           # an AWS profile name (~/.aws/config)
    addressing: str = "auto"             # "path", "virtual" or "auto"

    def label(self) -> str:
        return f"s3://{self.bucket}" + (f" at {self.endpoint}" if self.endpoint else "")


@dataclass
class Migration:
    bucket: str                           # the Pocket bucket
    source: Source
    state: str = PLANNED
    history: list[dict] = field(default_factory=list)    # [{"state", "at", "note"}]
    last_verify: dict | None = None       # {"at", "clean", "checked", "mismatched", "missing", "deep"}
    counters: dict = field(default_factory=dict)          # copy/verify/journal totals, for status
    created: float = field(default_factory=time.time)

    @property
    def authoritative(self) -> str:
        return "source" if self.state in SOURCE_AUTHORITATIVE else "pocket"

    @property
    def routed(self) -> bool:
        """True while the gateway must apply writes to both sides."""
        return self.state in ROUTED

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Migration":
        d = dict(d)
        d["source"] = Source(**d["source"])
        return cls(**d)


def record_name(bucket: str) -> str:
    return _RECORD + bucket


# ---- inside an index transaction (ops) ----------------------------------------------------
def get(ops, bucket: str) -> Migration | None:
    raw = ops.get_meta(record_name(bucket))
    return None if raw is None else Migration.from_dict(raw)


def put(ops, migration: Migration) -> int:
    """Store a record and bump the generation; returns the new generation."""
    ops.put_meta(record_name(migration.bucket), migration.to_dict())
    gen = ops.get_meta(_GENERATION, 0) + 1
    ops.put_meta(_GENERATION, gen)
    names = set(ops.get_meta(_RECORD + "buckets", []))
    if migration.bucket not in names:
        ops.put_meta(_RECORD + "buckets", sorted(names | {migration.bucket}))
    return gen


def generation(ops) -> int:
    return ops.get_meta(_GENERATION, 0)


def names(ops) -> list[str]:
    return list(ops.get_meta(_RECORD + "buckets", []))


def all_records(ops) -> list[Migration]:
    return [m for m in (get(ops, b) for b in names(ops)) if m is not None]


def move(ops, bucket: str, to: str, note: str = "", check=None) -> Migration:
    """Walk one edge of the state machine inside a transaction.

    `check(migration)` runs first and may raise MigrationError to refuse (cutover's guards).
    Raises MigrationError for an edge the machine does not have, naming the way forward."""
    m = get(ops, bucket)
    if m is None:
        raise MigrationError(f"bucket {bucket!r} is not being migrated: start with "
                             f"`pocket migrate plan {bucket}` and `pocket migrate enable {bucket}`")
    if (m.state, to) not in EDGES:
        raise MigrationError(f"bucket {bucket!r} is {m.state}; it cannot go to {to} from there "
                             f"({next_step(m.state)})")
    if check is not None:
        check(m)
    m.state = to
    m.history.append({"state": to, "at": time.time(), "note": note})
    put(ops, m)
    return m


def rollback_needless(m: Migration) -> str | None:
    """Why a rollback of `m` has nothing to do, or None. The promise is "rollback from any
    state before detached back to S3-authoritative": from planned or dual-write the source
    already is, so an operator's (or a runbook's) rollback succeeds and changes nothing
    rather than failing as if something were wrong."""
    if m.state in (PLANNED, DUAL_WRITE):
        return (f"{m.bucket} is {m.state}: the source is already authoritative; nothing changed "
                f"({next_step(m.state)})")
    return None


def next_step(state: str) -> str:
    return {
        PLANNED: "next: `pocket migrate enable` starts dual writes",
        DUAL_WRITE: "next: `pocket migrate copy` backfills the bucket",
        BACKFILLED: "next: `pocket migrate verify` compares every object",
        VERIFIED: "next: `pocket migrate cutover` makes Pocket authoritative",
        CUTOVER: "next: `pocket migrate detach` stops mirroring to the source (or `rollback`)",
        DETACHED: "the migration is finished; Pocket alone holds the bucket",
    }[state]


# ---- one transaction each (for commands and tests) ---------------------------------------
def load(index, bucket: str) -> Migration | None:
    with index.read() as ops:
        return get(ops, bucket)


def load_all(index) -> list[Migration]:
    with index.read() as ops:
        return all_records(ops)


def save(index, migration: Migration) -> int:
    return index.write(lambda ops: put(ops, migration))


def transition(index, bucket: str, to: str, note: str = "", check=None) -> Migration:
    return index.write(lambda ops: move(ops, bucket, to, note, check))


def current_generation(index) -> int:
    with index.read() as ops:
        return generation(ops)


def as_json(m: Migration) -> dict[str, Any]:
    d = m.to_dict()
    d["authoritative"] = m.authoritative
    d["next"] = next_step(m.state)
    return d
