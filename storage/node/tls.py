"""TLS for the gateway↔node link, for cluster networks the operator does not trust.

A node whose config entry has an `https://` url serves TLS with its `tls_cert` and
`tls_key`; everyone who talks to it (gateway, one-shot tools) pins its certificate,
either by `tls_fingerprint` (SHA-256 of the DER certificate, hex, colons allowed: works
with self-signed certificates and needs no CA) or by `tls_ca` (a CA file; the url's host
must then match the certificate). Without TLS the HMAC (auth.py) still keeps requests
from being forged or replayed, but not from being read or answered by someone else.
"""
from __future__ import annotations

import ssl

import aiohttp
from ..config_rules import fingerprint_bytes


def client_ssl(node):
    """The `ssl` argument for requests to `node` (a config NodeConfig)."""
    if not node.url.startswith("https://"):
        return True    # aiohttp's default; unused over http
    if node.tls_fingerprint:
        return aiohttp.Fingerprint(fingerprint_bytes(node.tls_fingerprint))
    ctx = ssl.create_default_context(cafile=node.tls_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def server_ssl(node) -> ssl.SSLContext | None:
    """What a node serves with: None over http."""
    if not node.url.startswith("https://"):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(node.tls_cert, node.tls_key)
    return ctx
