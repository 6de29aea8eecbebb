"""The rules a config must follow, one message per broken rule, naming its key.

Start-up refuses to run on the first (`Config.validate`); `pocket config check` lists
them all (config_check.py adds what only the machine can tell). Kept apart from the
typed tree so adding a setting's rule does not grow the loader.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .policy_spec import parse_policy
from .integrity import MIN_SECRET_BYTES

if TYPE_CHECKING:
    from .config import NodeConfig

# The least scrub.orphan_grace. Between its archives and its index commit a write looks
# like an orphan; the process writing it knows it exactly, but other gateways (and
# `pocket scrub`) learn of it from its gateway's report in the index, which trails a new
# write by up to a second (storage/objects/in_flight.py REPORT_SECONDS, plus the commit).
# The rest is for clocks: a version id is stamped by the writing server's clock and aged
# by the scrubbing one's, and a migrated copy's `copied` time is taken just before its
# write registers.
MIN_ORPHAN_GRACE = 10.0


def fingerprint_bytes(text: str) -> bytes:
    """A SHA-256 fingerprint as written in the config, e.g. `AB:CD:…` or `abcd…`."""
    raw = bytes.fromhex(text.replace(":", "").strip())
    if len(raw) != 32:
        raise ValueError("a tls_fingerprint is the SHA-256 of the certificate: 64 hex digits")
    return raw


def problems(cfg):
    """Every problem of the settings of `cfg` (a config.Config), one message each."""
    if not cfg.cluster_secret:
        yield "cluster_secret is empty: set it in the config or POCKET_CLUSTER_SECRET"
    elif len(cfg.cluster_secret.encode()) < MIN_SECRET_BYTES:
        yield (f"cluster_secret is {len(cfg.cluster_secret.encode())} bytes; it keys every node "
               f"request and on-disk checksum, so it must be at least {MIN_SECRET_BYTES} bytes "
               "(e.g. `python3 -c 'import secrets; print(secrets.token_hex(32))'`)")
    for node in cfg.nodes:
        yield from _tls_problems(node)
    shapes = {}
    for name, spec in cfg.policies.items():
        try:
            shapes[name] = parse_policy(spec)
        except ValueError as e:
            yield f"policies.{name}: {e}"
    for key in ("default_policy", "small_policy"):
        name = getattr(cfg.storage, key)
        if name and name not in cfg.policies:
            yield f"storage.{key} = {name!r} is not one of the policies {sorted(cfg.policies)}"
    widest = max((sum(shape) for shape in shapes.values()), default=0)
    disks = [d.id for n in cfg.nodes for d in n.disks]
    if len(disks) < widest:
        yield f"the policies need {widest} disks but the config lists {len(disks)}"
    duplicates = sorted({d for d in disks if disks.count(d) > 1})
    if duplicates:
        yield f"disk ids must be unique across all nodes; repeated: {duplicates}"
    if not cfg.credentials:
        yield ("no credentials: add [[credentials]] access_key/secret_key, "
               "or set POCKET_ACCESS_KEY and POCKET_SECRET_KEY")
    for section, keys, op, bound, why in _RANGES:
        for key in keys:
            value = getattr(getattr(cfg, section), key)
            if value < bound or (op == ">" and value == bound):
                yield f"{section}.{key} {why}"
    if 0 <= cfg.scrub.orphan_grace < MIN_ORPHAN_GRACE:
        yield orphan_grace_problem("scrub.orphan_grace", cfg.scrub.orphan_grace)
    if not 0 < cfg.repair.disk_afr < 1:
        yield "repair.disk_afr is a yearly probability: between 0 and 1, e.g. 0.02"
    if cfg.index.backend not in ("lmdb", "postgres"):
        yield (f"index.backend = {cfg.index.backend!r}: use \"lmdb\" (embedded, the default) "
               "or \"postgres\" (with index.dsn)")
    if cfg.index.backend == "postgres" and not cfg.index.dsn:
        yield ("index.backend is \"postgres\" but index.dsn is empty: set it (or POCKET_INDEX_DSN) "
               "to e.g. postgresql://pocket@db.example/pocket")
    if not 0 <= cfg.storage.pack_threshold <= cfg.storage.pack_size:
        yield "storage.pack_threshold must be between 0 (no packs) and storage.pack_size"
    if bool(cfg.gateway.tls_cert) != bool(cfg.gateway.tls_key):
        yield ("gateway.tls_cert and gateway.tls_key go together: set both (PEM certificate chain "
               "and its private key) or neither (plain HTTP)")
    if cfg.log.format not in ("text", "json"):
        yield f"log.format = {cfg.log.format!r}: use \"text\" or \"json\""
    if cfg.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        yield f"log.level = {cfg.log.level!r}: use debug, info, warning or error"


# The one-sided bounds of numeric settings: (section, keys, ">=" or ">", bound, what a bad value
# is told). Rules that compare two settings or name a choice are written out in problems().
_RANGES = (
    ("gateway", ("workers",), ">=", 0, "must be 0 (one per core) or more"),
    ("scrub", ("rate", "interval", "start_delay", "collect_interval", "orphan_grace"), ">=", 0,
     "must not be negative"),
    ("repair", ("rate",), ">=", 0, "must be 0 (unlimited) or bytes per second"),
    ("repair", ("concurrency",), ">=", 1, "must be at least 1"),
    ("repair", ("failed_after",), ">", 0, "must be a positive number of seconds (default 900: a disk down "
     "15 minutes is declared failed); `pocket disk fail DISK` declares one at once"),
    ("repair", ("move_rate",), ">=", 0, "must be 0 (no limit) or bytes per second"),
    ("repair", ("move_settle",), ">=", 0, "must not be negative"),
    ("lifecycle", ("interval", "rate"), ">=", 0, "must be 0 (off/unlimited) or a positive number"),
    ("lifecycle", ("day_seconds",), ">", 0, "must be positive (86400 but in tests)"),
    ("gateway", ("header_timeout", "body_timeout"), ">", 0, "must be a positive number of seconds"),
    ("gateway", ("body_min_rate",), ">=", 0, "must be 0 (no minimum) or bytes per second"),
    ("gateway", ("max_uploads",), ">=", 1, "must be at least 1"),
    ("gateway", ("index_max_size",), ">=", 256 << 10, "must be at least 256 KiB (default 4 TiB)"),
    ("gateway", ("drain_delay", "shutdown_timeout"), ">=", 0, "must not be negative"),
    ("index", ("pool_size",), ">=", 2, "must be at least 2"),
    ("index", ("lease_seconds",), ">=", 1, "must be at least 1 (default 30)"),
    ("storage", ("segment_size",), ">=", 4096, "must be at least 4096 bytes"),
    ("storage", ("pack_size",), ">=", 1 << 20, "must be at least 1 MiB"),
    ("storage", ("compact_interval",), ">=", 0, "must be 0 (never) or a number of seconds"),
)


def orphan_grace_problem(name: str, value: float) -> str:
    return (f"{name} = {value:g} is below {MIN_ORPHAN_GRACE:g} s: an upload begun on another gateway "
            f"reaches the index's list of writes in flight only that late (and clocks differ), so a "
            f"scrub pass could delete the archives of an upload that has not committed yet")


def _tls_problems(node: NodeConfig):
    where = f"nodes[{node.id}]"
    tls = [k for k in ("tls_cert", "tls_key", "tls_fingerprint", "tls_ca") if getattr(node, k)]
    if not node.url.startswith("https://"):
        if tls:
            yield f"{where} sets {tls} but its url is not https://; use https:// to turn TLS on"
        return
    if not (node.tls_cert and node.tls_key):
        yield f"{where} has an https url: set tls_cert and tls_key (the node's certificate and key)"
    if not (node.tls_fingerprint or node.tls_ca):
        yield (f"{where} has an https url: pin its certificate with tls_fingerprint "
               "(`openssl x509 -noout -fingerprint -sha256 -in CERT`) or tls_ca (a CA file)")
    if node.tls_fingerprint:
        try:
            fingerprint_bytes(node.tls_fingerprint)
        except ValueError as e:
            yield f"{where}.tls_fingerprint: {e}"
