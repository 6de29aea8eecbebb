"""The object and multipart services built from a config: the gateway's, or a one-shot
tool's (`pocket lifecycle`) over a cluster it opened itself, without the gateway."""
from __future__ import annotations

import logging

from ..cluster import Cluster
from ..config import Config, ConfigError
from ..crypto.keys import Keyring
from ..index.batcher import IndexWriter
from ..index.index import Index
from .multipart import MultipartService
from .policy import Policy
from .service import ObjectService

log = logging.getLogger("pocket.objects")


def object_services(cfg: Config, cluster: Cluster, index: Index,
                    writer: IndexWriter) -> tuple[ObjectService, MultipartService]:
    """The object and multipart services over a cluster (the gateway's, or a one-shot tool's)."""
    policies = {name: Policy.parse(name, spec, cfg.storage.write_quorum or None) for name, spec in cfg.policies.items()}
    st = cfg.storage
    objects = ObjectService(cluster, index, writer, policies, st.default_policy, st.small_policy or None,
                            st.small_threshold, st.segment_size, st.node_timeout, keyring(cfg))
    return objects, MultipartService(objects)


def keyring(cfg: Config) -> Keyring:
    """The server-side encryption keys the config names (a bad one stops the start-up)."""
    enc = cfg.encryption
    try:
        keys = Keyring.from_settings(enc.master_key, cfg.key_file, enc.kms_keys, cfg.cluster_secret)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if keys.master is None:
        log.info("no master key (encryption.master_key empty, no file at %s): SSE-S3 requests are refused with "
                 "400 until one is set; SSE-C works without it", cfg.key_file)
    return keys
