"""`pocket up`, `pocket gateway`, `pocket node`: the long-running processes."""
from __future__ import annotations

import logging
import os
import sys
import time

import click

from .common import load_config, run_until_signalled, with_cluster


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
def up(data: str, port: int | None, host: str | None, nodes: int, disks: int, tls_cert: str | None,
       tls_key: str | None) -> None:
    """Start a complete one-machine cluster and print its endpoint and keys."""
    import subprocess

    from storage import config as config_mod
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    path = config_mod.embedded(data, port or 9000, nodes=nodes, disks=disks)
    cfg = load_config(None, path)
    if tls_cert:
        cfg.gateway.tls_cert, cfg.gateway.tls_key = os.path.abspath(tls_cert), os.path.abspath(tls_key)
    if port or host:
        h, p = cfg.listen
        cfg.gateway.listen = f"{host or h}:{port or p}"
    children = []
    for node in cfg.nodes:
        if node.url:
            children.append(subprocess.Popen([sys.executable, "-m", "cli", "node", "--config", path, "--id", node.id,
                                              "--init"]))
    try:
        run_until_signalled(lambda: _serve_gateway(cfg, banner=True, children=children))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


async def _serve_gateway(cfg, banner: bool = False, children=()) -> None:
    from storage import logs, serving, tls
    from storage.gateway import Gateway
    logs.configure(cfg.log, sys.stderr if banner else sys.stdout)   # `pocket up` keeps stdout for its banner
    ssl_context = None
    if cfg.gateway.tls_cert:
        try:
            ssl_context = tls.server_context(cfg.gateway.tls_cert, cfg.gateway.tls_key)
        except (OSError, ValueError) as e:
            raise click.ClickException(f"cannot serve TLS with gateway.tls_cert = {cfg.gateway.tls_cert} and "
                                       f"gateway.tls_key = {cfg.gateway.tls_key}: {e}") from None
    if children:
        await _wait_for_nodes(cfg, children)
    gw = Gateway(cfg)
    await gw.start()
    host, port = cfg.listen
    sock = serving.inherited_socket()
    listener = await serving.listen(gw.app(), host, port, ssl_context=ssl_context, sock=sock, access_log=True,
                                    metrics=gw.metrics, shutdown_timeout=cfg.gateway.shutdown_timeout)
    if sock is not None:
        host, port = sock.getsockname()[:2]
    cred = cfg.credentials[0]
    scheme = "https" if ssl_context else "http"
    if banner:
        endpoint = f"{scheme}://{host}:{port}"
        click.echo(
            f"Pocket is up.\n"
            f"  S3 endpoint : {endpoint}\n"
            f"  Access key  : {cred.access_key}\n"
            f"  Secret key  : {cred.secret_key}\n"
            f"  Region      : {cfg.gateway.region}\n"
            f"  Data        : {os.path.abspath(cfg.data)} ({len(gw.cluster.disks)} disks, "
            f"policy {cfg.policies[cfg.storage.default_policy]}, {len(children) or 'no'} node processes)\n"
            f"Try: AWS_ACCESS_KEY_ID={cred.access_key} AWS_SECRET_ACCESS_KEY={cred.secret_key} "
            f"aws --endpoint-url {endpoint} s3 mb s3://my-bucket\n"
            f"Ctrl-C stops it.", err=False)
        sys.stdout.flush()
    else:
        logging.getLogger("pocket").info("gateway listening on %s://%s:%d%s", scheme, host, port,
                                         " (socket passed in by the service manager)" if sock else "")

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


async def _wait_for_nodes(cfg, children, timeout: float = 30.0) -> None:
    import asyncio

    import aiohttp
    from storage.node import auth
    from storage.node.tls import client_ssl
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        for node in cfg.nodes:
            if not node.url:
                continue
            while True:
                try:
                    async with s.get(node.url + "/v1/health", ssl=client_ssl(node),
                                     headers=auth.sign(cfg.cluster_secret, "GET", "/v1/health", node.id)) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if any(c.poll() is not None for c in children):
                    raise click.ClickException(f"node process for {node.id} exited; see its log above")
                if time.monotonic() > deadline:
                    raise click.ClickException(f"node {node.id} at {node.url} did not start within {timeout:.0f}s")
                await asyncio.sleep(0.1)


@click.command()
@with_cluster
def gateway(data, config) -> None:
    """Run the S3 gateway of a multi-process cluster."""
    cfg = load_config(data, config)
    run_until_signalled(lambda: _serve_gateway(cfg))


@click.command()
@with_cluster
@click.option("--id", "node_id", required=True, help="Which [[nodes]] entry of the config this process is.")
@click.option("--init", "initialize", is_flag=True,
              help="Initialise disk folders that have no pocket-disk.json yet (new disks).")
def node(data, config, node_id: str, initialize: bool) -> None:
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

    async def run():
        import asyncio

        from storage import logs, serving
        from storage.executor import io_executor
        from storage.node.open_disks import local_store
        logs.configure(cfg.log, sys.stdout)
        from storage.node.daemons import DiskDaemons
        from storage.node.server import build_app
        from storage.node.tls import server_ssl
        asyncio.get_running_loop().set_default_executor(io_executor())
        from storage.node.ownership import DiskInUse
        from storage.node.store import MissingDisk
        try:
            stores = {d.id: local_store(cfg, d, initialize) for d in ncfg.disks}
        except (MissingDisk, DiskInUse) as e:
            raise click.ClickException(str(e)) from None
        host, port = ncfg.listen
        daemons = DiskDaemons(stores, cfg)
        listener = await serving.listen(build_app(node_id, stores, cfg.cluster_secret), host, port,
                                        ssl_context=server_ssl(ncfg), shutdown_timeout=cfg.gateway.shutdown_timeout)
        daemons.start()
        logging.getLogger("pocket.node").info("node %s serving %d disks on %s:%d", node_id, len(stores), host, port)
        try:
            await serving.run_until_stopped(listener, on_reload=logs.reopen)
        finally:
            await daemons.stop()
            for store in stores.values():
                store.close()
    run_until_signalled(run)
