"""Serving one node's disks over the internal API: a `pocket node` process, or the
process that owns a multi-worker gateway's in-process disks (serve.py)."""
from __future__ import annotations

import logging
import signal
import sys
import time

import click


async def serve_node(cfg, ncfg, initialize: bool, sock=None, stop_on=(signal.SIGINT, signal.SIGTERM),
                     log_to=None) -> None:
    """Serve one node's disks: a `pocket node` process, or (`sock` given) the process that
    owns a multi-worker gateway's in-process disks (_disk_owner), which stops only when its
    master says so (SIGTERM), after the workers: Ctrl-C reaches every process at once."""
    import asyncio

    from storage import logs, serving, workers
    from storage.executor import io_executor
    from storage.node.daemons import DiskDaemons
    from storage.node.ownership import DiskInUse
    from storage.node.server import build_app
    from storage.node.store import MissingDisk
    from storage.node.tls import server_ssl
    logs.configure(cfg.log, log_to or sys.stdout)
    asyncio.get_running_loop().set_default_executor(io_executor())
    try:
        stores = await open_stores(cfg, ncfg, initialize, wait=10.0 if sock is not None else 0.0)
    except (MissingDisk, DiskInUse) as e:
        raise click.ClickException(str(e)) from None
    host, port = ncfg.listen
    daemons = DiskDaemons(stores, cfg)
    listener = await serving.listen(build_app(ncfg.id, stores, cfg.cluster_secret), host, port, sock=sock,
                                    ssl_context=server_ssl(ncfg), shutdown_timeout=cfg.gateway.shutdown_timeout)
    daemons.start()
    workers.report_serving()
    logging.getLogger("pocket.node").info("node %s serving %d disks on %s:%d", ncfg.id, len(stores), host, port)
    try:
        await serving.run_until_stopped(listener, on_reload=logs.reopen, stop_on=stop_on)
    finally:
        await daemons.stop()
        for store in stores.values():
            store.close()


async def open_stores(cfg, ncfg, initialize: bool, wait: float) -> dict:
    """Open (and lock) a node's disks. `wait`: seconds to wait for another process to let go
    of them, for a disk owner whose predecessor, of a gateway killed a moment ago, may
    still be exiting; an opened disk's lock is given back before each retry."""
    import asyncio

    from storage.node.open_disks import local_store
    from storage.node.ownership import DiskInUse
    deadline = time.monotonic() + wait
    while True:
        stores = {}
        try:
            for d in ncfg.disks:
                stores[d.id] = local_store(cfg, d, initialize)
            return stores
        except DiskInUse:
            for store in stores.values():
                store.close()
            if time.monotonic() > deadline:
                raise
        except BaseException:
            for store in stores.values():
                store.close()
            raise
        await asyncio.sleep(0.2)
