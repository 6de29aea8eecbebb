"""Probe tests for TLS on the gateway↔node link: nodes serve HTTPS with a self-signed
certificate, the gateway pins it by fingerprint (or by CA file), and a node showing
any other certificate is refused."""
import asyncio
import datetime
import hashlib
import ipaddress
import random
import ssl
import urllib.request

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from storage.config import NodeConfig
from storage.node.client import DiskUnavailable, RemoteDisk

from .harness import CLUSTER_SECRET, ProcCluster, wait_http


def self_signed(folder, name: str) -> tuple[str, str, str]:
    """(cert path, key path, SHA-256 fingerprint) of a new self-signed cert for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return str(cert_path), str(key_path), ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()


def _use_tls(c: ProcCluster, cert: str, key: str, pin: str) -> None:
    """Turn every node entry of the cluster's config into an https one pinned by `pin`."""
    with open(c.config) as f:
        text = f.read()
    for node, port in c.node_ports.items():
        text = text.replace(f'url = "http://127.0.0.1:{port}"',
                            f'url = "https://127.0.0.1:{port}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
                            f'tls_fingerprint = "{pin}"')
    with open(c.config, "w") as f:
        f.write(text)


def test_gateway_talks_to_nodes_over_pinned_tls_and_refuses_another_certificate(tmp_path):
    cert, key, pin = self_signed(tmp_path, "node")
    _other_cert, _other_key, other_pin = self_signed(tmp_path, "impostor")
    c = ProcCluster(str(tmp_path / "cluster"), nodes=2, disks_per_node=3)
    _use_tls(c, cert, key, pin)
    try:
        c.start()
        s3 = c.client()
        s3.create_bucket(Bucket="tls")
        data = random.Random(6).randbytes(3 << 20)
        s3.put_object(Bucket="tls", Key="k", Body=data)
        assert s3.get_object(Bucket="tls", Key="k")["Body"].read() == data
        port = c.node_ports["n1"]
        with pytest.raises(Exception):       # plain http to a TLS node gets nowhere
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        ctx = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=ctx, timeout=5) as r:
            assert r.status == 200

        # The same nodes, but the gateway's config pins another certificate: as if someone
        # else answered at the nodes' addresses. It must not talk to them at all.
        c.stop("gateway")
        with open(c.config) as f:
            text = f.read()
        with open(c.config, "w") as f:
            f.write(text.replace(pin, other_pin))
        c.start_gateway(ready=False)
        with pytest.raises(TimeoutError):
            wait_http(c.endpoint + "/_pocket/ready", timeout=8)
        assert "fingerprint" in c.log("gateway").lower()
        assert "PUT /v1/" not in c.log("n1") + c.log("n2")
    finally:
        c.close()


def test_ca_file_pins_the_node_certificate(tmp_path):
    """`tls_ca` instead of a fingerprint: a client trusting only that CA (here the node's
    own self-signed certificate) reaches the node; one trusting another CA does not."""
    cert, key, pin = self_signed(tmp_path, "node")
    other_cert, _k, _p = self_signed(tmp_path, "impostor")
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6)
    _use_tls(c, cert, key, pin)
    try:
        c.start_node("n1")
        url = f"https://127.0.0.1:{c.node_ports['n1']}"

        async def health(ca: str):
            node = NodeConfig("n1", url=url, tls_cert=cert, tls_key=key, tls_ca=ca)
            async with aiohttp.ClientSession() as session:
                return await RemoteDisk.for_node(node, "n1d1", CLUSTER_SECRET, session).health()
        assert asyncio.run(health(cert))["disk"] == "n1d1"
        with pytest.raises(DiskUnavailable, match="(?i)certificate"):
            asyncio.run(health(other_cert))
    finally:
        c.close()
