"""The cluster as a one-shot command (`pocket scrub`, `repair`, `status`) sees it.

These commands work whether the cluster is running or not. Disks of nodes that answer
are reached over the internal API, like the gateway does, except that the archive files
of one whose folder is on this host are read here (OwnedDisk; see `_NodeLink.disk`); a node
that does not answer but whose disk folders are on this machine has them opened directly. In-process disks
(the embedded `pocket up`) are opened directly in any case. A folder no process owns
(DiskStore's lock is free) is opened like its owner would, so torn tails are recovered
and packed archives can be deleted; a folder a running process owns is only attached
(`DiskStore.attach()`): it reads packs and writes files, and leaves `tmp/` and the
packs to their owner.
Every write a disk takes is a temp file renamed into place, so two processes writing
the same archive name leave one whole archive. A folder opened here gets a disk scrubber
of its own that runs only when asked (`pocket scrub`) and saves nothing: the state file
belongs to the process that owns the disk. The index is opened beside the gateway's
(LMDB shares an env between processes, see index/lmdb_backend.py; PostgreSQL is shared anyway).
Its writes are group-committed like the gateway's (index/batcher.py): a repair of a lost
disk resolves hundreds of queue entries a second, and one commit each was most of the
time of the repair's only index thread (py-spy of `pocket repair`).

aiohttp is imported only when the config has nodes to reach (`_node_link`), and the
gateway is probed over http.client: importing aiohttp (its connector builds two TLS
contexts at import) was ~40 % of the CPU of an empty bucket's `pocket migrate copy`
beside an embedded gateway (bench/RESULTS.md, Session 11).
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import ssl
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..cluster import Cluster
from ..policy_spec import parse_policy
from ..config import Config
from ..durability.queue import RepairQueue
from ..index.batcher import IndexWriter
from ..index.index import Index, open_index
from ..node.disk_scrub import DiskScrubber
from ..node.open_disks import local_store
from ..node.ownership import DiskInUse
from ..node.store import DISK_MARKER, DiskStore
from ..placement.volumes import DiskInfo

log = logging.getLogger("pocket.tool")


@dataclass
class ToolCluster:
    cfg: Config
    cluster: Cluster
    index: Index
    queue: RepairQueue
    direct: list[str]        # disks opened as local folders


@asynccontextmanager
async def open_cluster(cfg: Config, read_packs: bool = True, write_files: bool = False, lazy_packs: bool = False):
    """`read_packs=False`: folders a running process owns are attached without reading
    their packs (DiskStore.attach), for a command that writes and never reads archives;
    `lazy_packs`: read at the first archive that may be packed (node/deferred_packs.py).
    `write_files=True`: archive files for disks of running nodes on this host are written
    into their folders here (see `_NodeLink.disk`)."""
    link = _node_link(cfg, write_files)
    index = None
    writer = None
    cluster = None
    scrubbers: list[DiskScrubber] = []
    disks: dict = {}
    try:
        infos, direct = [], []
        for node in cfg.nodes:
            for d in node.disks:
                infos.append(DiskInfo(d.id, node.id, node.zone))
                remote = link.disk(node, d) if node.url else None
                if remote is not None and await link.answers(remote):
                    disks[d.id] = remote
                elif _is_disk_folder(d.path, d.id):
                    disks[d.id] = _open_folder(cfg, d, read_packs, lazy_packs)
                    direct.append(d.id)
                    scrubbers.append(DiskScrubber(disks[d.id], cfg.scrub.rate, persist=False, schedule=False))
                    scrubbers[-1].start()
                else:
                    disks[d.id] = remote or DiskStore(d.id, d.path)   # down: the heartbeat says so
        index = open_index(cfg)
        cluster = Cluster(disks, infos, cfg.gateway.heartbeat, timeout=cfg.storage.node_timeout)
        cluster.load_volumes(index, {sum(parse_policy(s)) for s in cfg.policies.values()})
        await cluster.check_once()
        cluster.start(index)
        writer = IndexWriter(index)
        yield ToolCluster(cfg, cluster, index, RepairQueue(index, writer), direct)
    finally:
        if writer is not None:
            await writer.aclose()
        for scrubber in scrubbers:
            await scrubber.stop()
        if cluster is not None:
            await cluster.stop()
        for disk in disks.values():
            if isinstance(disk, DiskStore):
                disk.close()
        if link is not None:
            await link.close()
        if index is not None:
            index.close()


def gateway_url(cfg: Config) -> str:
    """Where this machine reaches the cluster's gateway (its S3 port): https when it serves TLS."""
    host, port = _gateway_address(cfg)
    return f"{'https' if cfg.gateway.tls_cert else 'http'}://{host}:{port}"


def _gateway_address(cfg: Config) -> tuple[str, int]:
    host, port = cfg.listen
    return ("127.0.0.1" if host in ("0.0.0.0", "") else host), int(port)


def gateway_ssl(cfg: Config) -> ssl.SSLContext | bool:
    """How a tool on this machine checks the gateway's certificate: against the certificate
    file the gateway itself serves (its leaf and chain, as the trusted ones), so no CA needs
    configuring and another server's certificate is refused. The name is not checked: the
    tool dials the listen address (127.0.0.1 for 0.0.0.0), which a certificate made for
    the service's DNS name does not carry.

    Before this, every tool dialled http:// whatever the gateway served, found no gateway
    behind a TLS port, and acted as if none ran: `pocket status` said so, disk moves did
    not wait for the gateway to adopt a new volume table, and `migrate copy` wrote small
    objects itself."""
    if not cfg.gateway.tls_cert:
        return True
    ctx = ssl.create_default_context(cafile=cfg.gateway.tls_cert)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN    # the leaf itself may be the anchor
    ctx.check_hostname = False
    return ctx


def gateway_ready(cfg: Config, timeout: float = 2.0) -> dict | None:
    """What a running gateway reports at /_pocket/ready (its disks up and down, also while it
    says 503 draining), or None when none answers. Blocking: `gateway_view` in a loop."""
    host, port = _gateway_address(cfg)
    check = gateway_ssl(cfg)
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=check) if check is not True \
        else http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/_pocket/ready")
        r = conn.getresponse()
        body = r.read()
        if r.getheader("Content-Type", "").split(";")[0].strip() != "application/json":
            raise ValueError(f"{r.status} {r.getheader('Content-Type')}")
        return json.loads(body)
    except (OSError, http.client.HTTPException, ValueError) as e:
        log.debug("no gateway answers at %s: %r", gateway_url(cfg), e)
        return None
    finally:
        conn.close()


async def gateway_view(cfg: Config) -> dict | None:
    """`gateway_ready` from the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, gateway_ready, cfg)


async def gateway_adopted(cfg: Config, generation: int, timeout: float = 30.0,
                          uploads_timeout: float = 600.0, wait_uploads: bool = True) -> bool:
    """Wait until a running gateway uses volume table `generation` and no upload that
    chose its volume under an older table is still writing (True), or until no gateway
    answers (False). A gateway that does not pick up the table is an error: deleting old
    copies under its feet would degrade its reads. Uploads still running after
    `uploads_timeout` are left to the scrubber, which finds their moved fragment missing
    and queues it for repair. `wait_uploads=False`: only the table (nothing is deleted next)."""
    started = time.monotonic()
    while True:
        view = await gateway_view(cfg)
        if view is None:
            return False
        waited = time.monotonic() - started
        if view.get("volume_generation", -1) < generation:
            if waited > timeout:
                raise RuntimeError(f"the running gateway did not pick up volume table {generation} within "
                                   f"{timeout:.0f}s (it has {view.get('volume_generation')}); see its log")
        elif not wait_uploads or view.get("oldest_write_generation", generation) >= generation:
            return True
        elif waited > uploads_timeout:
            log.warning("uploads begun before volume table %d are still running after %.0fs; going on (a "
                        "fragment they write to the old disk is found by the next scrub and repaired)",
                        generation, waited)
            return True
        await asyncio.sleep(0.2)
def _open_folder(cfg: Config, disk, read_packs: bool = True, lazy_packs: bool = False) -> DiskStore:
    """Open a disk nobody runs; attach to one a running process owns."""
    try:
        return local_store(cfg, disk, initialize=False)
    except DiskInUse:
        return DiskStore(disk.id, disk.path, pack_threshold=cfg.storage.pack_threshold).attach(read_packs, lazy_packs)


def _node_link(cfg: Config, write_files: bool = False) -> "_NodeLink | None":
    """How this command reaches node processes over the network: None when the config names
    none (the embedded `pocket up`), and then aiohttp is not imported at all."""
    return _NodeLink(cfg, write_files) if any(node.url for node in cfg.nodes) else None


class _NodeLink:
    """The aiohttp session to the nodes, and the disks reached through it."""

    def __init__(self, cfg: Config, write_files: bool):
        from ..lazy_trust import import_aiohttp
        import_aiohttp()   # before node.client imports it: no trust store loaded at import
        from ..node.client import node_session
        self.cfg, self.write_files = cfg, write_files
        self.session = node_session()

    def disk(self, node, disk):
        """A disk its node serves. One whose folder is on this host as well (its marker names
        it) is an OwnedDisk, as a gateway worker's are: its archive files are read here (every
        record is checked by the reader, whoever fetched it), the rest asked of the node. A
        repair of a lost disk reads ~1.1 GB of fragments for 271 MiB rebuilt, and the nodes'
        answers and the loopback sockets cost more CPU than the reads (bench.repair: the
        nodes' share of the run fell from ~2.3 to ~1.1 s).

        Writes go through the node unless `write_files` (`pocket repair`), and then only small
        archives (packs have one writer) and those of a disk with a `capacity` quota (the
        owner counts it): sending a large rebuilt archive to its node cost both ends more than
        rebuilding it (py-spy of bench.repair, 1.5 GiB: the repair's socket writes 15 % of its
        CPU, the node's parsing, checking and writing a quarter of the run's node CPU). A
        repair killed mid-archive leaves its temp file in the owner's tmp/, never an archive,
        until the owner's scrub drops stale temp files (DiskStore.drop_stale_temp)."""
        from ..node.batch import BULK_BATCH_BYTES
        from ..node.client import RemoteDisk
        from ..node.owned_disk import OwnedDisk
        cfg = self.cfg
        if _marker(disk.path) == disk.id:
            return OwnedDisk.for_node(node, disk.id, cfg.cluster_secret, self.session, cfg.storage.node_timeout,
                                      local=DiskStore(disk.id, disk.path).beside_owner(),
                                      pack_threshold=cfg.storage.pack_threshold,
                                      write_files=self.write_files and not disk.capacity,
                                      mapped_reads=self.write_files,   # a repair: see mapped_read
                                      batch_bytes=BULK_BATCH_BYTES)
        return RemoteDisk.for_node(node, disk.id, cfg.cluster_secret, self.session, cfg.storage.node_timeout,
                                   batch_bytes=BULK_BATCH_BYTES)

    @staticmethod
    async def answers(disk) -> bool:
        try:
            await disk.health()
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.session.close()


def _marker(path: str) -> str | None:
    """The disk id a folder's marker names, None without a readable one."""
    try:
        with open(os.path.join(path, DISK_MARKER)) as f:
            return json.load(f).get("disk_id")
    except (OSError, ValueError, AttributeError):
        return None


def _is_disk_folder(path: str, disk_id: str) -> bool:
    found = _marker(path)
    if found is None:
        return False
    if found != disk_id:
        log.warning("%s belongs to disk %r, not %r; not using it", path, found, disk_id)
        return False
    return True
