"""Opening the disks a config describes: folders of this process as `DiskStore`, disks of
other nodes as `RemoteDisk` (both are node/disk.py's `Disk`), or as `OwnedDisk` when
they may be on this host (read and written here once their node confirms it).

The gateway, the node process and the one-shot tools (`pocket scrub`, `index rebuild`,
...) open disks the same way; it lives here so none of them imports the gateway for it.
The network kinds (and aiohttp with them) are imported by `open_disks` only: a command
that opens local folders alone (`local_store`) does not pay for them.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..config import Config, DiskConfig
from ..placement.volumes import DiskInfo
from .store import DiskStore

if TYPE_CHECKING:
    import aiohttp


def open_disks(cfg: Config, session: aiohttp.ClientSession | None,
               only: set[str] | None = None) -> tuple[dict, list[DiskInfo]]:
    from .client import RemoteDisk
    from .owned_disk import OwnedDisk
    disks, infos = {}, []
    for node in cfg.nodes:
        for d in node.disks:
            if only is not None and d.id not in only:
                continue
            if node.owned and not d.capacity:   # this host's disk, served by a worker's sibling
                disks[d.id] = OwnedDisk.for_node(node, d.id, cfg.cluster_secret, session, cfg.storage.node_timeout,
                                                 local=DiskStore(d.id, d.path).beside_owner(),
                                                 pack_threshold=cfg.storage.pack_threshold)
            elif node.url and cfg.storage.same_host and not d.capacity and os.path.isdir(d.path):
                # this host's, if the node says so (same_host.py)
                disks[d.id] = OwnedDisk.for_node(node, d.id, cfg.cluster_secret, session, cfg.storage.node_timeout,
                                                 local=DiskStore(d.id, d.path).beside_owner(),
                                                 pack_threshold=cfg.storage.pack_threshold, trusted=False)
            elif node.url:
                disks[d.id] = RemoteDisk.for_node(node, d.id, cfg.cluster_secret, session, cfg.storage.node_timeout)
            else:
                disks[d.id] = local_store(cfg, d)
            infos.append(DiskInfo(d.id, node.id, node.zone))
    return disks, infos


def local_store(cfg: Config, disk: DiskConfig, initialize: bool = True) -> DiskStore:
    st = cfg.storage
    return DiskStore(disk.id, disk.path, pack_threshold=st.pack_threshold, pack_size=st.pack_size,
                     capacity=disk.capacity).open(initialize)
