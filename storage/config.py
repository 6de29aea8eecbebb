"""Configuration: one TOML file, every scalar setting overridable from the environment.

`pocket up` needs no file at all: `config_embedded.embedded()` writes one to
`<data>/pocket.toml`, so one-shot commands given `--data DIR` find the cluster the same way as those given `--config FILE`. Mistakes are reported at
start-up naming the bad key, not discovered on the first request.
"""
from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields

from .config_rules import problems


class ConfigError(ValueError):
    pass


@dataclass
class Credential:
    access_key: str
    secret_key: str
    email: str = ""   # resolves S3 grants by e-mail address to this user (storage/s3/grants.py)


@dataclass
class DiskConfig:
    id: str
    path: str
    capacity: int = 0        # bytes Pocket may use on this disk; 0: as much as the filesystem has


@dataclass
class NodeConfig:
    id: str
    zone: str = "zone-1"
    url: str = ""            # empty: the disks are opened in the gateway's own process
    disks: list[DiskConfig] = field(default_factory=list)
    # An https url needs these (node/tls.py): the node's certificate and key, and how
    # its clients pin it (a SHA-256 fingerprint, or a CA file).
    tls_cert: str = ""
    tls_key: str = ""
    tls_fingerprint: str = ""
    tls_ca: str = ""
    # Set at start, never read from a file: in-process disks that a gateway of several
    # workers serves from one process of its own, reached at `url` (cli/serve.py).
    owned: bool = False
    # Processes serving this node's port (storage/node/processes.py), each owning some of
    # its disks; 0: one per core of the server it runs on, at most one per disk.
    processes: int = 0

    @property
    def process_count(self) -> int:
        if self.processes:
            return self.processes
        return max(1, min(os.cpu_count() or 1, len(self.disks)))

    @property
    def listen(self) -> tuple[str, int]:
        hostport = self.url.split("://", 1)[-1].rstrip("/")
        host, _, port = hostport.rpartition(":")
        return host or "127.0.0.1", int(port)


@dataclass
class GatewayConfig:
    listen: str = "127.0.0.1:9000"
    index: str = ""          # default: <data>/index
    index_max_size: int = 1 << 42   # bytes the LMDB index may grow to; past it writes get 507, as on a full disk
    region: str = "us-east-1"
    heartbeat: float = 2.0
    # Virtual-host-style addressing: a Host of `<bucket>.<domain>` names the bucket.
    # The listen host is added when it is a name (see Config.virtual_host_domains).
    domains: list[str] = field(default_factory=lambda: ["localhost"])
    # Slow and many clients (storage/s3/limits.py): seconds from a connection's opening
    # (or its previous response) until its request's headers are complete, also the idle
    # keep-alive; seconds a body may send nothing; the slowest average body rate after
    # that grace; uploads (PutObject, UploadPart) at once, one more gets 503 SlowDown
    # (with several workers each takes an equal share, rounded up).
    header_timeout: float = 60.0
    body_timeout: float = 60.0
    body_min_rate: int = 500
    max_uploads: int = 128
    # TLS on the S3 port: PEM files (the chain, then its key). SIGHUP reloads them for new
    # connections; connections already open keep theirs (storage/tls.py).
    tls_cert: str = ""
    tls_key: str = ""
    # SIGTERM: /_pocket/ready answers 503 for drain_delay seconds (a load balancer stops sending),
    # then the listener closes and requests in flight get up to shutdown_timeout to finish.
    drain_delay: float = 0.0
    shutdown_timeout: float = 30.0
    # Processes serving the S3 port (storage/workers.py); 0: one per core (os.cpu_count()).
    workers: int = 0


@dataclass
class IndexConfig:
    """Where the metadata index lives (storage/index/): LMDB in the gateway's folder
    (gateway.index), or a PostgreSQL database several gateways can share."""
    backend: str = "lmdb"            # "lmdb" or "postgres"
    dsn: str = ""                    # postgres: a libpq connection string or postgresql:// URL
    pool_size: int = 16              # postgres: connections per process at most
    # Once-per-cluster daemons (repair, scrub collection, lifecycle, failed-disk watcher) run
    # in the gateway holding their lease; a dead gateway's leases move after this long.
    lease_seconds: float = 30.0


@dataclass
class StorageConfig:
    default_policy: str = "ec"
    small_policy: str = "replica"
    small_threshold: int = 128 << 10
    segment_size: int = 1 << 20
    write_quorum: int = 0    # 0: k + 1
    node_timeout: float = 10.0
    min_free_bytes: int = 256 << 20   # a disk with less free space takes no new archives
    # archives up to this size go to pack files (0: none do): 264 KiB takes in a 1 MiB object's
    # ec:4+2 fragments (256 KiB + header, record heads and trailer), which as files cost a
    # file and an fsync each: 3-4 ms on a node against ~0.8 ms appended to a pack
    pack_threshold: int = 264 << 10
    pack_size: int = 64 << 20        # a pack file is closed for appends near this size
    compact_interval: float = 600.0  # seconds between pack compaction passes; 0: never
    # Disks of node processes on this host are read and written in their folders while their
    # nodes confirm it (node/same_host.py); false: over the node API only, as for another host.
    same_host: bool = True


@dataclass
class ScrubConfig:
    """Scrubbing: a scrubber per disk in the process that owns it (storage/node/disk_scrub.py)
    reads and checks every byte; the gateway collects what they found (storage/durability/scrub.py)."""
    enabled: bool = True            # background passes (`pocket scrub` works either way)
    rate: int = 8 << 20             # bytes/s read by the scrubber of each disk (0: unlimited)
    interval: float = 86400.0       # seconds from the end of a disk's full pass to the start of its next
    start_delay: float = 60.0       # after start-up, the first pass of a disk never scrubbed and the
                                    # gateway's first collection
    collect_interval: float = 3600.0  # seconds between the gateway's collections of findings
    orphan_grace: float = 3600.0    # unreferenced archives younger than this are left alone


@dataclass
class RepairConfig:
    """The repairer (storage/durability/repair.py) and the durability estimate of `pocket status`."""
    enabled: bool = True
    concurrency: int = 4            # versions with archives over 1 MiB rebuilt at once (smaller: 64x, in batches)
    interval: float = 10.0          # seconds between retries of what is still queued
    rate: int = 0                   # bytes/s of fragments rebuilt, all repairs together (0: unlimited)
    disk_afr: float = 0.02          # annual failure rate of one disk
    assumed_hours: float = 24.0     # time to repair a failed disk until one has been measured
    failed_after: float = 900.0     # seconds a disk may be down before it is declared failed and replaced
    move_rate: int = 64 << 20       # bytes/s copied by drain, replace and rebalance (0: unlimited)
    move_settle: float = 2.0        # seconds between switching a slot and deleting the old copies


@dataclass
class LifecycleConfig:
    """Bucket lifecycle passes (storage/lifecycle/runner.py) in the gateway."""
    interval: float = 3600.0        # seconds from the end of one pass to the start of the next; 0: no passes
    rate: float = 100.0             # deletes and aborts per second at most (0: unlimited)
    # Testing knob (like Ceph RGW's rgw_lc_debug_interval): the length of a lifecycle "day"
    # in seconds. Rules' Days and the x-amz-expiration dates count in these units.
    day_seconds: float = 86400.0


@dataclass
class LogConfig:
    """Where a serving process logs (storage/logs.py): one line per S3 request and per event."""
    format: str = "text"     # "text" for people, "json" for log shippers (one object per line)
    file: str = ""           # empty: stdout; a file is reopened on SIGHUP, so logrotate can move it
    level: str = "info"


@dataclass
class EncryptionConfig:
    """Server-side encryption (storage/crypto/). The master key wraps SSE-S3 data keys (and
    SSE-KMS ones without a key id); losing it loses those objects, so back it up."""
    master_key: str = ""       # base64 of 32 bytes; empty: read key_file
    key_file: str = ""         # default <data>/encryption.key (`pocket up` writes one, mode 0600)
    kms_keys: list[str] = field(default_factory=list)   # SSE-KMS key ids: "name:<base64 of 32 bytes>"
    # S3 refuses SSE-C keys over plain HTTP; behind a TLS proxy X-Forwarded-Proto: https counts.
    allow_http_customer_keys: bool = False


@dataclass
class Config:
    data: str = "./pocket-data"
    cluster_secret: str = ""
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    scrub: ScrubConfig = field(default_factory=ScrubConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    log: LogConfig = field(default_factory=LogConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    policies: dict[str, str] = field(default_factory=lambda: {"ec": "ec:4+2", "replica": "replica:3"})
    credentials: list[Credential] = field(default_factory=list)
    nodes: list[NodeConfig] = field(default_factory=list)
    source: str = ""         # the file this was loaded from (a gateway re-reads it for disks added later)

    @property
    def index_path(self) -> str:
        return self.gateway.index or os.path.join(self.data, "index")

    @property
    def index_url(self) -> str:
        """The index as `open_url` and `pocket index copy --from` name it (storage/index/index.py)."""
        return self.index.dsn if self.index.backend == "postgres" else f"lmdb:{self.index_path}"

    @property
    def key_file(self) -> str:
        return self.encryption.key_file or os.path.join(self.data, "encryption.key")

    @property
    def listen(self) -> tuple[str, int]:
        host, _, port = self.gateway.listen.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def virtual_host_domains(self) -> list[str]:
        """Domains under which `<bucket>.<domain>` is a bucket: gateway.domains plus the listen host."""
        domains = [d.strip().lower().strip(".") for d in self.gateway.domains if d.strip().strip(".")]
        host = self.listen[0].lower()
        if host and not _is_ip(host) and host not in domains:
            domains.append(host)
        return domains

    @property
    def workers(self) -> int:
        """How many processes serve the S3 port: gateway.workers, or (0) one per core.

        Except that 0 means one process for a gateway that opens disks in-process (the
        embedded `pocket up`): with workers, those disks get one owner process that serves
        every fragment to the workers over loopback HTTP, and on the 2-core box of
        bench/RESULTS.md that hop cost more than the second core gave (PUT 4 KiB c16 569
        vs 800 ops/s, GET 64 MiB 505 vs 728 MiB/s). Set gateway.workers to have them anyway."""
        if self.gateway.workers:
            return self.gateway.workers
        if any(not n.url or n.owned for n in self.nodes):
            return 1
        return os.cpu_count() or 1

    def node(self, node_id: str) -> NodeConfig:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise ConfigError(f"no node {node_id!r} in the config; nodes are {[n.id for n in self.nodes]}")

    def validate(self) -> "Config":
        """Refuse to start on the first problem, named by its key."""
        for problem in self.problems():
            raise ConfigError(problem)
        return self

    def problems(self):
        """Every problem of the settings, one message each (`pocket config check` lists them all)."""
        return problems(self)


def load(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    cfg = from_dict(raw, base=os.path.dirname(os.path.abspath(path)))
    cfg.source = os.path.abspath(path)
    return apply_env(cfg).validate()


def from_dict(raw: dict, base: str = ".") -> Config:
    raw = dict(raw)
    for n in raw.get("nodes", []):
        _known_keys(n, {"id", "zone", "url", "disks", "processes", *_TLS_PATHS, "tls_fingerprint"},
                    f"nodes[{n.get('id', '?')}]")
        if not isinstance(n.get("processes", 0), int) or n.get("processes", 0) < 0:
            raise ConfigError(f"nodes[{n.get('id', '?')}].processes = {n['processes']!r} must be 0 (one per "
                              "core, at most one per disk) or more")
        for d in n.get("disks", []):
            where = f"nodes[{n.get('id', '?')}].disks[{d.get('id', '?')}]"
            _known_keys(d, {"id", "path", "capacity"}, where)
            if not isinstance(d.get("capacity", 0), int) or d.get("capacity", 0) < 0:
                raise ConfigError(f"{where}.capacity = {d['capacity']!r} must be a whole number of bytes "
                                  "(0: no quota)")
    try:
        cfg = Config(
            data=os.path.join(base, raw.pop("data", "pocket-data")),
            cluster_secret=raw.pop("cluster_secret", ""),
            gateway=_section(GatewayConfig, raw.pop("gateway", {}), "gateway"),
            index=_section(IndexConfig, raw.pop("index", {}), "index"),
            storage=_section(StorageConfig, raw.pop("storage", {}), "storage"),
            scrub=_section(ScrubConfig, raw.pop("scrub", {}), "scrub"),
            repair=_section(RepairConfig, raw.pop("repair", {}), "repair"),
            lifecycle=_section(LifecycleConfig, raw.pop("lifecycle", {}), "lifecycle"),
            log=_section(LogConfig, raw.pop("log", {}), "log"),
            encryption=_section(EncryptionConfig, raw.pop("encryption", {}), "encryption"),
            policies=raw.pop("policies", None) or Config().policies,
            credentials=[Credential(**c) for c in raw.pop("credentials", [])],
            nodes=[NodeConfig(id=n["id"], zone=n.get("zone", "zone-1"), url=n.get("url", ""),
                              disks=[DiskConfig(d["id"], os.path.join(base, d["path"]), d.get("capacity", 0))
                                     for d in n.get("disks", [])],
                              tls_fingerprint=n.get("tls_fingerprint", ""), processes=n.get("processes", 0),
                              **{k: os.path.join(base, n[k]) for k in _TLS_PATHS if n.get(k)})
                   for n in raw.pop("nodes", [])],
        )
    except (TypeError, KeyError) as e:
        raise ConfigError(f"bad credentials or nodes entry: {e}") from None
    if raw:
        raise ConfigError(f"unknown top-level config keys: {sorted(raw)}")
    # Like data and disk paths: relative to the config file, not the cwd.
    for section, key in (("gateway", "index"), ("gateway", "tls_cert"), ("gateway", "tls_key"), ("log", "file")):
        value = getattr(getattr(cfg, section), key)
        if value:
            setattr(getattr(cfg, section), key, os.path.join(base, value))
    if cfg.encryption.key_file:
        cfg.encryption.key_file = os.path.join(base, cfg.encryption.key_file)
    cfg.data = os.path.normpath(cfg.data)
    return cfg


_TLS_PATHS = ("tls_cert", "tls_key", "tls_ca")   # relative to the config file, like disk paths


def _known_keys(entry: dict, allowed: set[str], where: str) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)} in {where}; allowed: {sorted(allowed)}")


def _section(cls, raw: dict, name: str):
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown setting {name}.{key}; known: {sorted(known)}")
    out = cls()
    for key, value in raw.items():
        setattr(out, key, _coerce(known[key].type, value, f"{name}.{key}"))
    return out


def _coerce(kind, value, where: str):
    kind = kind if isinstance(kind, str) else kind.__name__
    if kind == "list[str]":  # a TOML array, or a comma-separated environment variable
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{where} = {value!r} is not a list of strings")
        return [i.strip() for i in items if i.strip()]
    try:
        return {"int": int, "float": float, "str": str, "bool": _bool}[kind](value)
    except (ValueError, KeyError):
        raise ConfigError(f"{where} = {value!r} is not a valid {kind}") from None


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def apply_env(cfg: Config, env=os.environ) -> Config:
    """POCKET_<SECTION>_<KEY> overrides gateway, index, storage, scrub, repair, lifecycle, log and
    encryption settings (POCKET_LOG_FORMAT=json); a few top-level too."""
    for section in ("gateway", "index", "storage", "scrub", "repair", "lifecycle", "log", "encryption"):
        obj = getattr(cfg, section)
        for f in fields(obj):
            value = env.get(f"POCKET_{section}_{f.name}".upper())
            if value is not None:
                setattr(obj, f.name, _coerce(f.type, value, f"POCKET_{section}_{f.name}".upper()))
    cfg.cluster_secret = env.get("POCKET_CLUSTER_SECRET", cfg.cluster_secret)
    for pair in filter(None, (p.strip() for p in env.get("POCKET_USERS", "").split(","))):
        access, sep, secret = pair.partition(":")
        if not sep or not access or not secret:
            raise ConfigError("POCKET_USERS must look like AK1:SK1,AK2:SK2")
        cfg.credentials = [c for c in cfg.credentials if c.access_key != access] + [Credential(access, secret)]
    if env.get("POCKET_ACCESS_KEY") and env.get("POCKET_SECRET_KEY"):
        cfg.credentials = [Credential(env["POCKET_ACCESS_KEY"], env["POCKET_SECRET_KEY"])] + [
            c for c in cfg.credentials if c.access_key != env["POCKET_ACCESS_KEY"]]
    return cfg
