"""Serving one node's disks over the internal API: a `pocket node` process (or the
processes of a node with `processes` above one: storage/node/processes.py), or the
process that owns a multi-worker gateway's in-process disks (serve.py)."""
from __future__ import annotations

import logging
import signal
import sys
import time

import click

from .common import run_until_signalled


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
        stores = await open_stores(cfg, ncfg.disks, initialize, wait=10.0 if sock is not None else 0.0)
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


async def open_stores(cfg, disks, initialize: bool, wait: float) -> dict:
    """Open (and lock) disks of a node. `wait`: seconds to wait for another process to let go
    of them, for a disk owner whose predecessor, of a gateway killed a moment ago, may
    still be exiting; an opened disk's lock is given back before each retry."""
    import asyncio

    from storage.node.open_disks import local_store
    from storage.node.ownership import DiskInUse
    deadline = time.monotonic() + wait
    while True:
        stores = {}
        try:
            for d in disks:
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


def serve_node_processes(cfg, ncfg, initialize: bool, count: int) -> None:
    """A node of `count` processes on one listening socket (storage/node/processes.py),
    supervised as a gateway's workers are (storage/workers.py): a process that dies is
    started again, SIGTERM drains them all. The master opens no disk and no event loop."""
    import gc
    import importlib
    import os

    from storage import logs, run_folders, serving, workers
    from storage.node.shared_replay import SharedReplayCache
    logs.configure(cfg.log, sys.stdout)
    try:
        sock = serving.inherited_socket() or workers.listening_socket(*ncfg.listen)
    except OSError as e:
        raise click.ClickException(f"cannot listen on {ncfg.url}: {e.strerror}; stop what uses it") from None
    run_dir, held = run_folders.make("pocket-node-")    # mode 0700: the siblings' sockets (short: a unix path)
    os.mkdir(os.path.join(run_dir, "metrics"))      # and their shared counters (storage/metrics.py)
    replay = SharedReplayCache()
    for module in ("storage.node.server", "storage.node.processes", "storage.node.daemons"):
        importlib.import_module(module)     # imported once: each process starts warm, pages shared
    gc.collect()
    gc.freeze()
    children = [(f"node {ncfg.id} process {n}",
                 lambda first, n=n: run_until_signalled(lambda: _serve_process(cfg, ncfg, initialize, n, count, sock,
                                                                               run_dir, replay)), {})
                for n in range(count)]
    logging.getLogger("pocket.node").info("node %s on %s:%d: %d processes for %d disks", ncfg.id,
                                          *sock.getsockname()[:2], count, len(ncfg.disks))
    try:
        code = workers.Supervisor(children, what="node").run()
    finally:
        run_folders.remove(run_dir, held)
    if code:
        raise SystemExit(code)


async def _serve_process(cfg, ncfg, initialize: bool, me: int, count: int, sock, run_dir: str, replay) -> None:
    """One process of a node: owns its share of the disks, serves the node's port and, for
    its siblings, a unix socket; on SIGTERM the port drains first, then the socket, so
    what a sibling forwards while it drains is still served."""
    import asyncio
    import os
    import socket

    from storage import logs, serving, workers
    from storage.executor import io_executor
    from storage.metrics import share_between_workers
    from storage.node import processes
    from storage.node.daemons import DiskDaemons
    from storage.node.ownership import DiskInUse
    from storage.node.server import build_app
    from storage.node.store import DiskStore, MissingDisk
    from storage.node.tls import server_ssl
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C reaches every process: the master says when
    share_between_workers(os.path.join(run_dir, "metrics"))
    logs.configure(cfg.log, sys.stdout)
    asyncio.get_running_loop().set_default_executor(io_executor())
    owner = processes.owners([d.id for d in ncfg.disks], count)
    try:   # the predecessor of a process restarted a moment ago may still hold its disks
        stores = await open_stores(cfg, [d for d in ncfg.disks if owner[d.id] == me], initialize, wait=10.0)
    except (MissingDisk, DiskInUse) as e:
        raise click.ClickException(str(e)) from None
    beside = {d.id: DiskStore(d.id, d.path).beside_owner() for d in ncfg.disks if owner[d.id] != me}
    front = processes.Front(me, ncfg.id, cfg.cluster_secret, owner, stores, beside, run_dir,
                            cfg.storage.pack_threshold, {d.id for d in ncfg.disks if d.capacity},
                            cfg.storage.node_timeout)
    path = processes.socket_path(run_dir, me)
    if os.path.exists(path):
        os.unlink(path)     # the socket of this process's predecessor
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen(1024)
    inner = await serving.listen(build_app(ncfg.id, stores, cfg.cluster_secret, replay=processes.Trusted,
                                           counted=False), "", 0, sock=unix,
                                 shutdown_timeout=cfg.gateway.shutdown_timeout)
    public = await serving.listen(build_app(ncfg.id, {**stores, **beside}, cfg.cluster_secret, replay=replay,
                                            front=front.middleware), *ncfg.listen, sock=sock,
                                  ssl_context=server_ssl(ncfg), shutdown_timeout=cfg.gateway.shutdown_timeout)
    daemons = DiskDaemons(stores, cfg)
    daemons.start()
    workers.report_serving()
    logging.getLogger("pocket.node").info("node %s process %d serving disks %s", ncfg.id, me, sorted(stores))
    try:
        await serving.run_until_stopped(public, on_reload=logs.reopen, stop_on=(signal.SIGTERM,))
        await serving.drain(inner, lambda: None, 0.0)
    finally:
        await front.close()
        await daemons.stop()
        for store in stores.values():
            store.close()
