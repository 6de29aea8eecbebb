"""The `pocket` command: parses arguments and calls storage/. Nothing else lives here.

click gives us nested commands (`pocket index rebuild`), typed options and help text
for free, which is why it is used instead of argparse.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time

import click

from storage import config as config_mod
from storage.config import ConfigError


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def load_config(data: str | None, config: str | None) -> config_mod.Config:
    """The same `--data DIR` / `--config FILE` for every command."""
    try:
        if config:
            return config_mod.load(config)
        path = os.path.join(data or "./pocket-data", "pocket.toml")
        if not os.path.exists(path):
            raise ConfigError(f"no cluster at {data or './pocket-data'}: {path} is missing "
                              "(start one with `pocket up --data DIR`, or pass --config FILE)")
        return config_mod.load(path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def _run_until_signalled(main) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


cluster_options = [
    click.option("--data", "data", type=click.Path(file_okay=False), default=None,
                 help="Data folder of a `pocket up` cluster (default ./pocket-data)."),
    click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                 help="pocket.toml describing the cluster."),
]


def with_cluster(fn):
    for opt in reversed(cluster_options):
        fn = opt(fn)
    return fn


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Pocket: an erasure-coded, S3-compatible object store."""
    _setup_logging(verbose)


@main.command()
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
        _run_until_signalled(lambda: _serve_gateway(cfg, banner=True, children=children))
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
    import aiohttp
    from storage.node import auth
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        for node in cfg.nodes:
            if not node.url:
                continue
            while True:
                try:
                    async with s.get(node.url + "/v1/health",
                                     headers=auth.sign(cfg.cluster_secret, "GET", "/v1/health")) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if any(c.poll() is not None for c in children):
                    raise click.ClickException(f"node process for {node.id} exited; see its log above")
                if time.monotonic() > deadline:
                    raise click.ClickException(f"node {node.id} at {node.url} did not start within {timeout:.0f}s")
                await asyncio.sleep(0.1)


@main.command()
@with_cluster
def gateway(data, config) -> None:
    """Run the S3 gateway of a multi-process cluster."""
    cfg = load_config(data, config)
    _run_until_signalled(lambda: _serve_gateway(cfg))


@main.command()
@with_cluster
@click.option("--id", "node_id", required=True, help="Which [[nodes]] entry of the config this process is.")
@click.option("--init", "initialize", is_flag=True,
              help="Initialise disk folders that have no pocket-disk.json yet (new disks).")
def node(data, config, node_id: str, initialize: bool) -> None:
    """Run a disk node: serve this node's disks over the internal API.

    Without --init a disk folder must already carry its marker, so an unmounted disk
    (an empty mount point) stops the node instead of filling the root filesystem."""
    cfg = load_config(data, config)
    try:
        ncfg = cfg.node(node_id)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    if not ncfg.url:
        raise click.ClickException(f"node {node_id} has no url in the config, so it has nothing to listen on")

    async def run():
        from storage import logs, serving
        from storage.gateway import io_executor, local_store
        logs.configure(cfg.log, sys.stdout)
        from storage.node.daemons import DiskDaemons
        from storage.node.server import build_app
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
                                      shutdown_timeout=cfg.gateway.shutdown_timeout)
        daemons.start()
        logging.getLogger("pocket.node").info("node %s serving %d disks on %s:%d", node_id, len(stores), host, port)
        try:
            await serving.run_until_stopped(listener, on_reload=logs.reopen)
        finally:
            await daemons.stop()
            for store in stores.values():
                store.close()
    _run_until_signalled(run)


@main.group()
def index() -> None:
    """Maintain the metadata index."""


@index.command("rebuild")
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def index_rebuild(data, config, as_json: bool) -> None:
    """Recreate the index from the disks alone. Stop the gateway first."""
    cfg = load_config(data, config)

    async def run():
        import aiohttp
        from storage.gateway import open_disks
        from storage.index.rebuild import rebuild
        from storage.placement.volumes import build_volumes
        from storage.codec import parse_policy
        async with aiohttp.ClientSession() as session:
            disks, infos = open_disks(cfg, session)
            widths = {sum(parse_policy(s)) for s in cfg.policies.values()}
            volumes = [v for w in sorted(widths) for v in build_volumes(infos, w)]
            return await rebuild(disks, cfg.index_path, volumes)
    report = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
    else:
        click.echo(f"Rebuilt {cfg.index_path} from {report.disks_scanned} disks in {report.seconds:.1f}s: "
                   f"{report.buckets} buckets, {report.objects} objects, "
                   f"{report.uploads} unfinished multipart uploads ({report.parts} parts) "
                   f"({report.archives} archives; {report.tombstoned} deleted, {report.superseded} superseded "
                   f"versions skipped; {report.unreadable} unrecoverable; {report.versions} versions and delete "
                   f"markers of versioned buckets kept).")
        if report.disks_unreachable:
            click.echo(f"WARNING: disks {report.disks_unreachable} could not be read; run again once they are back.")
    if report.disks_unreachable or report.unreadable:
        sys.exit(1)


# durability: scrub, repair, status ------------------------------------------------------------
def _run_tool(cfg, work):
    """Run `work(tool_cluster)` against the cluster, running or stopped (storage/repair/tooling.py)."""
    async def main():
        from storage.gateway import io_executor
        from storage.repair.tooling import open_cluster
        asyncio.get_running_loop().set_default_executor(io_executor())
        async with open_cluster(cfg) as tc:
            return await work(tc)
    return asyncio.run(main())


class _Progress:
    """A progress bar on stderr (stdout stays clean for --json), sized once the total is known."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def start(self, total: int) -> None:
        self.bar = click.progressbar(length=max(total, 1), label=self.label, file=sys.stderr,
                                     show_percent=True, show_pos=False)
        self.bar.__enter__()

    def step(self, n: int = 1) -> None:
        if self.bar:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar:
            self.bar.__exit__(None, None, None)


@main.command()
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--rate", type=click.IntRange(min=0), default=None,
              help="Bytes per second each disk reads (default: scrub.rate; 0: no limit).")
@click.option("--orphan-grace", type=float, default=None,
              help="Seconds an unreferenced archive must be old before removal (default: scrub.orphan_grace).")
@click.option("--keep-orphans", is_flag=True, help="Report orphaned archives but do not remove them.")
@click.option("--force-orphans", is_flag=True, help="Remove orphans even past the safety valve (see docs).")
def scrub(data, config, as_json: bool, rate, orphan_grace, keep_orphans: bool, force_orphans: bool) -> None:
    """Have every disk read and check all its archives now; queue damage for repair; remove orphans.

    Disks of running nodes scrub themselves (asked over the internal API); disk folders
    of stopped nodes and in-process disks are checked by this command.

    Exit status: 0 all good, 1 damage found (queued: run `pocket repair`),
    2 some disks could not be scrubbed."""
    cfg = load_config(data, config)
    progress = _Progress("Scrubbing")

    async def work(tc):
        from storage.repair.scrub import Scrubber
        scrubber = Scrubber(tc.cluster, tc.index, tc.queue, rate,
                            cfg.scrub.orphan_grace if orphan_grace is None else orphan_grace)
        try:
            return await scrubber.run_once(on_bytes=progress.step, on_listed=progress.start, fresh=True,
                                           remove_orphans=not keep_orphans, force_orphans=force_orphans)
        finally:
            progress.close()
    report = _run_tool(cfg, work)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(f"Scrubbed {report.archives} archives ({report.bytes_verified / 2**20:.1f} MiB) on "
                   f"{report.disks - len(report.disks_skipped)} of {report.disks} disks in {report.seconds:.1f}s "
                   f"({report.bytes_verified / 2**20 / max(report.seconds, 1e-9):.1f} MiB/s); "
                   f"{report.versions} object versions and parts checked.")
        for row in report.corrupt:
            click.echo(f"  CORRUPT {row['bucket']}/{row['key']} fragment {row['index']} on {row['disk']}: "
                       f"{row['problem']}")
        for row in report.missing:
            click.echo(f"  MISSING {row['bucket']}/{row['key']} fragment {row['index']} on {row['disk']}")
        click.echo(f"{len(report.corrupt)} corrupt, {len(report.missing)} missing ({report.queued} objects queued "
                   f"for repair); {len(report.orphans_removed)} orphaned archives removed, "
                   f"{report.orphans_young} too young to judge, {len(report.orphans_kept)} kept by a safety valve.")
        if report.disks_skipped:
            click.echo(f"WARNING: disks {sorted(set(report.disks_skipped))} were not scrubbed (down or failing).")
    if report.disks_skipped:
        sys.exit(2)
    if report.corrupt or report.missing:
        sys.exit(1)


@main.command()
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--concurrency", type=int, default=None, help="Objects rebuilt at once (default: repair.concurrency).")
@click.option("--rate", type=click.IntRange(min=0), default=None,
              help="Bytes per second of fragments rebuilt (default: repair.rate; 0: no limit).")
def repair(data, config, as_json: bool, concurrency, rate) -> None:
    """Rebuild every fragment in the repair queue, least redundancy first.

    Exit status: 0 when the queue is empty afterwards, 1 when something could not be
    repaired (a disk is down, or too few good fragments are left)."""
    cfg = load_config(data, config)
    progress = _Progress("Repairing")

    async def work(tc):
        from storage.repair.repair import Repairer
        repairer = Repairer(tc.cluster, tc.index, tc.queue, concurrency or cfg.repair.concurrency,
                            cfg.storage.node_timeout, rate=cfg.repair.rate if rate is None else rate)
        progress.start(tc.queue.length())
        try:
            return await repairer.run_once(on_entry=lambda _entry: progress.step())
        finally:
            progress.close()
    report = _run_tool(cfg, work)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        mib = report.bytes_written / 2**20
        click.echo(f"Repaired {report.fragments} fragments of {len(report.repaired)} objects ({mib:.1f} MiB) "
                   f"in {report.seconds:.1f}s ({mib / max(report.seconds, 1e-9):.1f} MiB/s); "
                   f"{report.found_good} reported fragments were fine; {report.dropped} entries were for "
                   f"deleted or replaced versions.")
        for row in report.deferred:
            why = row.get("why") or f"disks {row['disks']} are down"
            click.echo(f"  WAITING {row['bucket']}/{row['key']} version {row['version_id']} {row['indexes']}: {why}")
        for row in report.failed:
            click.echo(f"  FAILED  {row['bucket']}/{row['key']}: {row['error']}")
        click.echo(f"{report.remaining} object versions still queued.")
    if report.remaining:
        sys.exit(1)


@main.command()
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(data, config, as_json: bool) -> None:
    """Disks, volumes, objects, objects at risk, scrub progress and estimated durability."""
    cfg = load_config(data, config)

    async def work(tc):
        from storage.repair.status import collect
        return await collect(tc)
    st = _run_tool(cfg, work)
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        from storage.repair.status import render
        click.echo(render(st))



from . import config_cmd as _config_cmd  # noqa: E402,F401  (registers `pocket config check`)
from . import disks as _disks  # noqa: E402,F401  (registers `pocket disk ...` and `pocket rebalance`)
from . import index_cmd as _index_cmd  # noqa: E402,F401  (registers `pocket index backup` and `restore`)
from .lifecycle import lifecycle  # noqa: E402  (a command module of its own; it uses the helpers above)

main.add_command(lifecycle)
