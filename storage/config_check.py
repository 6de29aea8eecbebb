"""`pocket config check`: every problem of a config file at once, before anything starts.

Start-up refuses a bad config on its first problem; an operator preparing a cluster
wants them all, plus what only the machine can tell: disk folders that are missing or
not writable, certificate files that do not load, node URLs that do not answer or do
not share the cluster secret (`reach=True`). One line per problem, naming the key.
"""
from __future__ import annotations

import asyncio
import os
import ssl
import tomllib
from dataclasses import fields
from urllib.parse import urlsplit

from . import config as config_mod
from .config import ConfigError

_SECTIONS = {"gateway": config_mod.GatewayConfig, "storage": config_mod.StorageConfig,
             "scrub": config_mod.ScrubConfig, "repair": config_mod.RepairConfig,
             "lifecycle": config_mod.LifecycleConfig, "log": config_mod.LogConfig,
             "index": config_mod.IndexConfig, "encryption": config_mod.EncryptionConfig}
_TOP = {"data", "cluster_secret", "policies", "credentials", "nodes", *_SECTIONS}
_NODE_KEYS = {"id", "zone", "url", "disks", "processes", "tls_cert", "tls_key", "tls_fingerprint", "tls_ca"}


def check(path: str, node: str | None = None, reach: bool = False, timeout: float = 3.0) -> tuple[list, list]:
    """(problems, notes) of the config at `path`; `node`: also check that node's disk folders."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        return [f"{path}: cannot read it ({e.strerror})"], []
    except tomllib.TOMLDecodeError as e:
        return [f"{path}: not valid TOML: {e}"], []
    problems = _keys(raw)
    if problems:   # the typed tree cannot be built from keys it does not know
        return problems, []
    try:
        cfg = config_mod.apply_env(config_mod.from_dict(raw, base=os.path.dirname(os.path.abspath(path))))
    except ConfigError as e:
        return [str(e)], []
    problems += list(cfg.problems())
    problems += _nodes(cfg, node)
    notes: list[str] = []
    problems += _paths(cfg, node, notes)
    problems += _tls(cfg, node)
    if reach:
        problems += asyncio.run(_reach(cfg, timeout))
    return problems, notes


def _keys(raw: dict) -> list[str]:
    out = [f"unknown top-level key {key!r}; known: {sorted(_TOP)}" for key in raw if key not in _TOP]
    for name, cls in _SECTIONS.items():
        section = raw.get(name, {})
        if not isinstance(section, dict):
            out.append(f"[{name}] must be a table")
            continue
        known = {f.name: f for f in fields(cls)}
        for key, value in section.items():
            if key not in known:
                out.append(f"unknown setting {name}.{key}; known: {sorted(known)}")
                continue
            try:
                config_mod._coerce(known[key].type, value, f"{name}.{key}")
            except ConfigError as e:
                out.append(str(e))
    for i, n in enumerate(raw.get("nodes", [])):
        where = f"nodes[{n.get('id', i)}]"
        out += [f"unknown setting {key!r} in {where}; allowed: {', '.join(sorted(_NODE_KEYS))}"
                for key in n if key not in _NODE_KEYS]
        if "id" not in n:
            out.append(f"{where} has no id")
        for j, d in enumerate(n.get("disks", [])):
            dwhere = f"{where}.disks[{d.get('id', j)}]"
            out += [f"unknown setting {key!r} in {dwhere}; allowed: capacity, id, path"
                    for key in d if key not in ("id", "path", "capacity")]
            out += [f"{dwhere} has no {key}" for key in ("id", "path") if key not in d]
            capacity = d.get("capacity", 0)
            if not isinstance(capacity, int) or capacity < 0:
                out.append(f"{dwhere}.capacity = {capacity!r} must be a whole number of bytes (0: no quota)")
    known = {f.name for f in fields(config_mod.Credential)}
    for i, c in enumerate(raw.get("credentials", [])):
        if not {"access_key", "secret_key"} <= set(c) <= known:
            out.append(f"credentials[{i}] needs access_key and secret_key (and may have "
                       f"{', '.join(sorted(known - {'access_key', 'secret_key'}))}), has {sorted(c)}")
    return out


def _nodes(cfg, only: str | None) -> list[str]:
    out = []
    ids = [n.id for n in cfg.nodes]
    out += [f"node id {i!r} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if only and only not in ids:
        out.append(f"--node {only}: no such node; nodes are {ids}")
    urls = {}
    for n in cfg.nodes:
        if not n.url:
            continue
        parts = urlsplit(n.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            out.append(f"nodes[{n.id}].url = {n.url!r}: write it as http://HOST:PORT")
            continue
        if (parts.hostname, parts.port) in urls:
            out.append(f"nodes[{n.id}].url and nodes[{urls[(parts.hostname, parts.port)]}].url are the same address")
        urls[(parts.hostname, parts.port)] = n.id
        if not n.disks:
            out.append(f"nodes[{n.id}] lists no disks")
    # One server's disks must not share a folder; in-process nodes all live on the gateway's server.
    servers = {}
    for n in cfg.nodes:
        servers.setdefault(n.url or "", []).extend(d.path for d in n.disks)
    for paths in servers.values():
        out += [f"disk path {p} is listed twice for one server" for p in sorted({p for p in paths
                                                                                 if paths.count(p) > 1})]
    return out


def _paths(cfg, only: str | None, notes: list[str]) -> list[str]:
    """Disk folders of in-process nodes and of `only`; other nodes' disks are on their own servers."""
    out = []
    remote = [n.id for n in cfg.nodes if n.url and n.id != only]
    if remote:
        notes.append(f"disks of nodes {remote} are checked on their servers: pocket config check --node ID")
    for n in cfg.nodes:
        if n.url and n.id != only:
            continue
        for d in n.disks:
            where = f"nodes[{n.id}].disks[{d.id}].path = {d.path}"
            if not os.path.exists(d.path):
                out.append(f"{where} does not exist (mount the disk there, or create the folder)")
            elif not os.path.isdir(d.path):
                out.append(f"{where} is not a folder")
            elif not os.access(d.path, os.W_OK | os.X_OK):
                out.append(f"{where} is not writable by this user")
            elif not os.path.exists(os.path.join(d.path, "pocket-disk.json")):
                notes.append(f"disk {d.id} at {d.path} is new: its node's first start needs --init")
    if only is None:   # on the gateway's server
        index_parent = _existing_parent(cfg.index_path)
        if not os.access(index_parent, os.W_OK):
            out.append(f"gateway.index = {cfg.index_path}: {index_parent} is not writable by this user")
    if cfg.log.file and not os.access(_existing_parent(cfg.log.file), os.W_OK):
        out.append(f"log.file = {cfg.log.file}: cannot be created or written by this user")
    return out


def _tls(cfg, only: str | None) -> list[str]:
    """The S3 port's certificate and the CA files clients of https nodes pin (on the gateway's
    server), or the node's own certificate (`--node`, on that node's server)."""
    out = []
    if only is None and cfg.gateway.tls_cert and cfg.gateway.tls_key:
        out += _cert_pair("gateway.tls_cert", cfg.gateway.tls_cert, "gateway.tls_key", cfg.gateway.tls_key)
    for n in cfg.nodes:
        if not n.url.startswith("https://"):
            continue
        if n.id == only and n.tls_cert and n.tls_key:
            out += _cert_pair(f"nodes[{n.id}].tls_cert", n.tls_cert, f"nodes[{n.id}].tls_key", n.tls_key)
        if only is None and n.tls_ca:
            try:
                ssl.create_default_context(cafile=n.tls_ca)
            except (OSError, ssl.SSLError) as e:
                out.append(f"nodes[{n.id}].tls_ca = {n.tls_ca} does not load: {e}")
    return out


def _cert_pair(cert_key: str, cert: str, key_key: str, key: str) -> list[str]:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        return [f"{cert_key} = {cert} / {key_key} = {key} do not load: {e}"]
    return []


async def _reach(cfg, timeout: float) -> list[str]:
    import aiohttp

    from .node import auth
    from .node.tls import client_ssl

    async def one(session, n) -> str | None:
        url = n.url.rstrip("/") + "/v1/health"
        try:
            async with session.get(url, headers=auth.sign(cfg.cluster_secret, "GET", "/v1/health", n.id),
                                   ssl=client_ssl(n), timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                if r.status == 403:
                    return (f"nodes[{n.id}].url = {n.url} refuses our requests (403): its cluster_secret "
                            "differs, or the url reaches another node")
                if r.status != 200:
                    return f"nodes[{n.id}].url = {n.url} answers {r.status} to its health check"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            return f"nodes[{n.id}].url = {n.url} is not reachable from here ({type(e).__name__}: {e})"
        return None
    async with aiohttp.ClientSession() as session:
        found = await asyncio.gather(*(one(session, n) for n in cfg.nodes if n.url))
    return [f for f in found if f]


def _existing_parent(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path
