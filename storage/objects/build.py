"""The object and multipart services built from a config: the gateway's, or a one-shot
tool's (`pocket lifecycle`) over a cluster it opened itself, without the gateway."""
from __future__ import annotations

from ..cluster import Cluster
from ..config import Config
from ..index.batcher import IndexWriter
from ..index.index import Index
from .multipart import MultipartService
from .service import ObjectService, Policy


def object_services(cfg: Config, cluster: Cluster, index: Index,
                    writer: IndexWriter) -> tuple[ObjectService, MultipartService]:
    """The object and multipart services over a cluster (the gateway's, or a one-shot tool's)."""
    policies = {name: Policy.parse(name, spec, cfg.storage.write_quorum or None) for name, spec in cfg.policies.items()}
    st = cfg.storage
    objects = ObjectService(cluster, index, writer, policies, st.default_policy, st.small_policy or None,
                            st.small_threshold, st.segment_size, st.node_timeout)
    return objects, MultipartService(objects)
