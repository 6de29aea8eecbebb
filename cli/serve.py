"""`pocket up`, `pocket gateway`, `pocket node`: the long-running processes."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

import click

from .common import load_config, run_until_signalled, with_cluster
from .serve_node import serve_node, serve_node_processes

if TYPE_CHECKING:
    import subprocess


@click.command()
@click.option("--data", default="./pocket-data", type=click.Path(file_okay=False), show_default=True,
              help="Folder for disks, index and generated config.")
@click.option("--port", default=None, type=int, help="S3 port (default 9000, or what pocket.toml says).")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--nodes", default=0, type=int, help="Run N separate node processes instead of in-process disks.")
@click.option("--disks", default=6, type=int, show_default=True, help="Disks to create on first start.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Serve HTTPS with this PEM certificate chain (with --tls-key; SIGHUP reloads both).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The private key of --tls-cert (PEM).")
@click.option("--postgres", is_flag=True,
              help="Keep the index in a PostgreSQL server of its own under --data (Debian's postgresql "
                   "package) and run several gateways over it, with the disks in node processes.")
@click.option("--gateways", default=None, type=click.IntRange(1), help="Gateway processes, on ports from --port "
              "up (needs --postgres; default 2 with it).")
@click.option("--workers", default=None, type=click.IntRange(1),
              help="Processes serving each gateway's port (default: gateway.workers, 0 there: one per core, one with in-process disks).")
def up(data: str, port: int | None, host: str | None, nodes: int, disks: int, tls_cert: str | None,
       tls_key: str | None, postgres: bool, gateways: int | None, workers: int | None) -> None:
    """Start a complete one-machine cluster and print its endpoint and keys."""
    import subprocess

    from storage.config_embedded import embedded

    from storage.lifeline import lifeline
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if (gateways or 1) > 1 and not postgres:
        raise click.UsageError("--gateways needs --postgres: the embedded LMDB index belongs to one gateway process")
    gateways = gateways or (2 if postgres else 1)
    if postgres:
        nodes = max(nodes, 1)    # gateways share the disks only through node processes
    path = embedded(data, port or 9000, nodes=nodes, disks=disks, gateways=gateways, postgres=postgres)
    cfg = load_config(None, path)
    _check_shape(cfg, path, postgres)
    if tls_cert:
        cfg.gateway.tls_cert, cfg.gateway.tls_key = os.path.abspath(tls_cert), os.path.abspath(tls_key)
    if not cfg.encryption.master_key:   # the master key of SSE-S3/SSE-KMS, generated once
        from storage.crypto.keys import write_key_file
        write_key_file(cfg.key_file)
    if port or host:
        h, p = cfg.listen
        cfg.gateway.listen = f"{host or h}:{port or p}"
    if workers:
        cfg.gateway.workers = workers
        os.environ["POCKET_GATEWAY_WORKERS"] = str(workers)   # the other gateways of --postgres too
    children, server = [], None
    try:
        if postgres:
            server = _start_postgres(cfg)
        for node in cfg.nodes:
            if node.url:
                children.append(subprocess.Popen([sys.executable, "-m", "cli", "node", "--config", path,
                                                  "--id", node.id, "--init"], **lifeline()))
        spawn = (lambda: _spawn_gateways(cfg, path, gateways)) if gateways > 1 else None
        _run_gateway(cfg, banner=True, children=children, spawn_gateways=spawn)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if server is not None:
            server.stop()


def _check_shape(cfg, path: str, postgres: bool) -> None:
    """Refuse a folder made for the other shape: its index is where its config says."""
    if postgres and cfg.index.backend != "postgres":
        raise click.ClickException(f"{path} keeps this cluster's index in LMDB (it was made by `pocket up` "
                                   "without --postgres): start it without --postgres, or use a new --data folder")
    if not postgres and cfg.index.backend == "postgres" and os.path.isdir(os.path.join(cfg.data, "postgres")):
        raise click.ClickException(f"{path} keeps this cluster's index in its own PostgreSQL under "
                                   f"{os.path.join(cfg.data, 'postgres')}: start it with `pocket up --postgres`")
    if postgres and not any(n.url for n in cfg.nodes):
        raise click.ClickException(f"{path} has no node processes, and gateways share disks only through "
                                   "them: add a url to each [[nodes]] entry, or use a new --data folder")


def _start_postgres(cfg):
    """The cluster's own PostgreSQL under <data>/postgres, running, with the index schema."""
    from urllib.parse import urlsplit

    from storage.index.backend import MetadataIndexError
    from storage.index.local_postgres import LocalPostgres, LocalPostgresError
    from storage.index.index import upgrade
    dsn = urlsplit(cfg.index.dsn)
    server = LocalPostgres(os.path.join(cfg.data, "postgres"), dsn.port or 5432, dsn.password or "")
    try:
        server.init()
        server.start()
        try:
            server.create_database(dsn.path.lstrip("/") or "pocket")
            upgrade(cfg.index.dsn)
        except BaseException:
            server.stop()
            raise
    except (LocalPostgresError, MetadataIndexError) as e:
        raise click.ClickException(str(e)) from None
    return server


def _gateway_ports(cfg, gateways: int) -> list[int]:
    """The gateways' ports: the configured one, then the next ones no node or the index uses."""
    from urllib.parse import urlsplit
    taken = {urlsplit(n.url).port for n in cfg.nodes if n.url}
    if cfg.index.backend == "postgres":
        taken.add(urlsplit(cfg.index.dsn).port)
    ports = [cfg.listen[1]]
    while len(ports) < gateways:
        candidate = ports[-1] + 1
        while candidate in taken:
            candidate += 1
        ports.append(candidate)
    return ports


def _spawn_gateways(cfg, path: str, gateways: int) -> list[tuple[str, subprocess.Popen]]:
    """Gateways 2..N as `pocket gateway` processes with this config on their own ports;
    their logs go to stderr, like the first gateway's, so stdout keeps only the banner."""
    import subprocess

    from storage.lifeline import lifeline
    host = cfg.listen[0]
    scheme = "https" if cfg.gateway.tls_cert else "http"
    spawned = []
    for port in _gateway_ports(cfg, gateways)[1:]:
        env = {**os.environ, "POCKET_GATEWAY_LISTEN": f"{host}:{port}"}
        if cfg.gateway.tls_cert:
            env.update(POCKET_GATEWAY_TLS_CERT=cfg.gateway.tls_cert, POCKET_GATEWAY_TLS_KEY=cfg.gateway.tls_key)
        endpoint = f"{scheme}://{host}:{port}"
        spawned.append((endpoint, subprocess.Popen([sys.executable, "-m", "cli", "gateway", "--config", path],
                                                   env=env, stdout=sys.stderr, **lifeline())))
    return spawned


async def _until_ok(request, exited, deadline: float, died: str, late: str) -> None:
    """Ask `request()` (a new aiohttp request each time: node requests are signed once) until
    it answers 200. A process we started that exits, or the deadline, ends the wait with a
    message for the operator instead of a hang."""
    import asyncio

    import aiohttp
    while True:
        try:
            async with request() as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if exited():
            raise click.ClickException(died)
        if time.monotonic() > deadline:
            raise click.ClickException(late)
        await asyncio.sleep(0.1)


async def _wait_ready(endpoint: str, proc, timeout: float = 60.0) -> None:
    import aiohttp
    url = endpoint.replace("://0.0.0.0:", "://127.0.0.1:") + "/_pocket/ready"
    async with aiohttp.ClientSession() as s:
        await _until_ok(lambda: s.get(url, ssl=False), lambda: proc is not None and proc.poll() is not None,
                        time.monotonic() + timeout, f"the gateway for {endpoint} exited; see its log above",
                        f"the gateway for {endpoint} was not ready within {timeout:.0f}s")


def _run_gateway(cfg, banner: bool = False, children=(), spawn_gateways=None) -> None:
    """One gateway process, or with gateway.workers > 1 a master and its workers
    (storage/workers.py) sharing one listening socket. The master waits for the nodes and
    starts the other gateways of `--postgres` first, so the workers only serve."""
    # A reload (logrotate, a renewed certificate) may come while the gateway starts: until the
    # supervisor or the serving loop takes SIGHUP over there is nothing to reload, and its
    # default action would stop the gateway (the listening socket opens before the workers fork)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if cfg.workers <= 1:
        run_until_signalled(lambda: _serve_gateway(cfg, banner, children, spawn_gateways))
        return
    import asyncio
    import gc

    from storage import logs, run_folders, serving, workers
    logs.configure(cfg.log, sys.stderr if banner else sys.stdout)
    if children:
        asyncio.run(_wait_for_nodes(cfg, children))
    others = spawn_gateways() if spawn_gateways else []
    if others:
        children.extend(proc for _, proc in others)    # `pocket up` stops them with the nodes
    endpoints = [e for e, _ in others]
    try:
        sock = serving.inherited_socket() or workers.listening_socket(*cfg.listen)
    except OSError as e:
        raise click.ClickException(f"cannot listen on {cfg.gateway.listen}: {e.strerror}; stop what uses "
                                   "it or set another port (--port, gateway.listen)") from None
    log_to = sys.stderr if banner else sys.stdout    # `pocket up` keeps stdout for its banner
    # What the workers run, imported once before they fork: each then starts warm (a worker
    # restarted after a crash serves ~0.15 s of CPU sooner) and shares these pages with its
    # siblings. Importing opens nothing: the master still holds no index, disk or loop.
    # Frozen, the collector in a child never walks these objects: it wrote to each one's
    # header and so copied every shared page (a child 22 MB of its own instead of 12 MB).
    import importlib
    for module in ("storage.gateway", "storage.node.server"):
        importlib.import_module(module)
    gc.collect()
    gc.freeze()
    helpers = [(f"disks of {node.id}", _disk_owner(cfg, node, log_to), {}) for node in cfg.nodes if not node.url]
    metrics, held = run_folders.make("pocket-metrics-")   # the workers' shared counters (storage/metrics.py)
    serve = [(f"worker {i}", lambda first, i=i: _worker(cfg, banner and i == 0 and first, log_to, sock, endpoints,
                                                       len(children) - len(others), metrics),
              {workers.WORKER_ENV: str(i)}) for i in range(cfg.workers)]
    logging.getLogger("pocket").info("gateway on %s:%d: %d worker processes%s", *sock.getsockname()[:2],
                                     cfg.workers, f", {len(helpers)} owning the in-process disks" if helpers else "")
    try:
        code = workers.Supervisor(serve, helpers).run()
    finally:
        run_folders.remove(metrics, held)
    if code:
        raise SystemExit(code)


def _disk_owner(cfg, node, log_to):
    """In-process disks under several workers: one process owns them (their packs have one
    writer, storage/node/ownership.py) and serves them to the workers over the node API on
    a loopback port, as a node process would; the workers reach them as remote disks."""
    from storage import workers
    sock = workers.listening_socket("127.0.0.1", 0)
    node.url, node.owned = f"http://127.0.0.1:{sock.getsockname()[1]}", True
    return lambda first: run_until_signalled(lambda: serve_node(cfg, node, initialize=True, sock=sock,
                                                                stop_on=(signal.SIGTERM,), log_to=log_to))


def _worker(cfg, banner: bool, log_to, sock, endpoints: list[str], node_processes: int, metrics: str) -> int:
    from storage.metrics import share_between_workers
    share_between_workers(metrics)
    run_until_signalled(lambda: _serve_gateway(cfg, banner, sock=sock, endpoints=endpoints,
                                               node_processes=node_processes, log_to=log_to))
    return 0


async def _serve_gateway(cfg, banner: bool = False, children=(), spawn_gateways=None, sock=None,
                         endpoints=None, node_processes: int | None = None, log_to=None) -> None:
    """`sock`, `endpoints`, `node_processes`, `log_to`: a worker's listening socket, what its
    master started (the other gateways' endpoints, the node processes) and where it logs."""
    from storage import logs, serving, tls, workers
    from storage.gateway import Gateway
    # `pocket up` keeps stdout for its banner
    logs.configure(cfg.log, log_to or (sys.stderr if banner else sys.stdout))
    ssl_context = None
    if cfg.gateway.tls_cert:
        try:
            ssl_context = tls.server_context(cfg.gateway.tls_cert, cfg.gateway.tls_key)
        except (OSError, ValueError) as e:
            raise click.ClickException(f"cannot serve TLS with gateway.tls_cert = {cfg.gateway.tls_cert} and "
                                       f"gateway.tls_key = {cfg.gateway.tls_key}: {e}") from None
    if children:
        await _wait_for_nodes(cfg, children)
    others = spawn_gateways() if spawn_gateways else [(e, None) for e in endpoints or ()]
    if others and spawn_gateways:
        children.extend(proc for _, proc in others)    # `pocket up` stops them with the nodes
    if node_processes is None:
        node_processes = len(children) - len(others)
    gw = Gateway(cfg)
    await gw.start()
    host, port = cfg.listen
    inherited = sock is None
    sock = sock if sock is not None else serving.inherited_socket()
    listener = await serving.listen(gw.app(), host, port, ssl_context=ssl_context, sock=sock, access_log=True,
                                    metrics=gw.metrics, shutdown_timeout=cfg.gateway.shutdown_timeout)
    workers.report_serving()
    if sock is not None:
        host, port = sock.getsockname()[:2]
    cred = cfg.credentials[0]
    scheme = "https" if ssl_context else "http"
    if banner:
        await _until_writable(gw)
        for other, proc in others:
            await _wait_ready(other, proc)
        endpoint = f"{scheme}://{host}:{port}"
        endpoints = "".join(f"  S3 endpoint : {e}{f' (gateway {i + 1} of {len(others) + 1})' if others else ''}\n"
                            for i, e in enumerate([endpoint] + [e for e, _ in others]))
        if cfg.index.backend == "postgres":
            from storage.index.pg_backend import redact
            endpoints += f"  Index       : {redact(cfg.index.dsn)}\n"
        click.echo(
            f"Pocket is up.\n"
            f"{endpoints}"
            f"  Access key  : {cred.access_key}\n"
            f"  Secret key  : {cred.secret_key}\n"
            f"  Region      : {cfg.gateway.region}\n"
            f"  Data        : {os.path.abspath(cfg.data)} ({len(gw.cluster.disks)} disks, "
            f"policy {cfg.policies[cfg.storage.default_policy]}, "
            f"{node_processes or 'no'} node processes"
            f"{f', {cfg.workers} workers' if cfg.workers > 1 else ''})\n"
            f"Try: AWS_ACCESS_KEY_ID={cred.access_key} AWS_SECRET_ACCESS_KEY={cred.secret_key} "
            f"aws --endpoint-url {endpoint} s3 mb s3://my-bucket\n"
            f"Ctrl-C stops it.", err=False)
        sys.stdout.flush()
    else:
        logging.getLogger("pocket").info("gateway listening on %s://%s:%d%s", scheme, host, port,
                                         " (socket passed in by the service manager)" if sock and inherited else "")

    def reload():
        logs.reopen()
        if ssl_context is not None:
            tls.reload(ssl_context, cfg.gateway.tls_cert, cfg.gateway.tls_key)

    def drain():
        gw.draining = True
    try:
        await serving.run_until_stopped(listener, on_reload=reload, on_drain=drain,
                                        drain_delay=cfg.gateway.drain_delay)
    finally:
        await gw.stop()


async def _until_writable(gw, timeout: float = 30.0) -> None:
    """"Pocket is up" is said once a client can write: every node answering its health check
    is not yet every disk marked up (a heartbeat that timed out on a busy box left a first
    CreateBucket 503 "too few disks reachable" right after the banner). A cluster that stays
    short of a write quorum still comes up, for reads, with a warning saying which disks."""
    import asyncio
    deadline = time.monotonic() + timeout
    while not (state := gw.readiness())["ready"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if not state["ready"]:
        logging.getLogger("pocket").warning(
            "not ready for writes after %.0fs: %d disks up, %d needed (down: %s); reads are served, "
            "writes fail with 503 until enough disks answer: check the node processes' logs",
            timeout, state["disks_up"], state["disks_needed"], ", ".join(state["disks_down"]) or "none")


async def _wait_for_nodes(cfg, children, timeout: float = 30.0) -> None:
    import aiohttp
    from storage.node import auth
    from storage.node.tls import client_ssl
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        for node in cfg.nodes:
            if not node.url:
                continue
            await _until_ok(lambda: s.get(node.url + "/v1/health", ssl=client_ssl(node),
                                          headers=auth.sign(cfg.cluster_secret, "GET", "/v1/health", node.id)),
                            lambda: any(c.poll() is not None for c in children), deadline,
                            f"node process for {node.id} exited; see its log above",
                            f"node {node.id} at {node.url} did not start within {timeout:.0f}s")


@click.command()
@with_cluster
@click.option("--workers", default=None, type=click.IntRange(1),
              help="Processes serving the port (default: gateway.workers, 0 there: one per core, one with in-process disks).")
def gateway(data, config, workers: int | None) -> None:
    """Run the S3 gateway of a multi-process cluster."""
    cfg = load_config(data, config)
    if workers:
        cfg.gateway.workers = workers
    _run_gateway(cfg)


@click.command()
@with_cluster
@click.option("--id", "node_id", required=True, help="Which [[nodes]] entry of the config this process is.")
@click.option("--init", "initialize", is_flag=True,
              help="Initialise disk folders that have no pocket-disk.json yet (new disks).")
@click.option("--processes", default=None, type=click.IntRange(1),
              help="Processes serving the node's port, each owning some of its disks (default: the node's "
                   "`processes`, 0 there: one per core, at most one per disk).")
def node(data, config, node_id: str, initialize: bool, processes: int | None) -> None:
    """Run a disk node: serve this node's disks over the internal API.

    Without --init a disk folder must already carry its marker, so an unmounted disk
    (an empty mount point) stops the node instead of filling the root filesystem."""
    from storage.config import ConfigError
    cfg = load_config(data, config)
    try:
        ncfg = cfg.node(node_id)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    if not ncfg.url:
        raise click.ClickException(f"node {node_id} has no url in the config, so it has nothing to listen on")
    if processes:
        ncfg.processes = processes
    if ncfg.process_count > 1:
        serve_node_processes(cfg, ncfg, initialize, ncfg.process_count)
        return
    run_until_signalled(lambda: serve_node(cfg, ncfg, initialize))

