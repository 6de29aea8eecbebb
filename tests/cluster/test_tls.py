"""TLS on the S3 port: real clients verify the certificate against the operator's CA, and a
renewed certificate is picked up on SIGHUP by new connections while open ones keep going."""
import asyncio
import http.client
import os
import random
import signal
import ssl
import subprocess
import time

import boto3
import pytest
from botocore.config import Config as BotoConfig

from storage.config import load as load_config
from storage.tools.cluster import gateway_view

from .certs import TestCA
from .harness import ACCESS_KEY, SECRET_KEY, ProcCluster, pocket
from .sources import pocket_migrate, start_moto


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    ca = TestCA(str(root))
    cert, key = str(root / "gateway.crt"), str(root / "gateway.key")
    first_serial = ca.issue(cert, key)
    c = ProcCluster(str(root / "cluster"), nodes=6, embedded=True,
                    gateway={"tls_cert": cert, "tls_key": key}, ca=ca.pem).start()
    c.tls = {"ca": ca, "cert": cert, "key": key, "serial": first_serial}
    yield c
    c.close()


def _body(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _peer_serial(conn: http.client.HTTPSConnection) -> int:
    return int(conn.sock.getpeercert()["serialNumber"], 16)


def _https(c, ca_file: str) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=ca_file)
    return http.client.HTTPSConnection("127.0.0.1", c.port, context=ctx, timeout=30)


def test_boto3_verifies_the_certificate(tls_cluster, tmp_path):
    c = tls_cluster
    s3 = c.client()
    s3.create_bucket(Bucket="tls-boto")
    body = _body(3 * 1024 * 1024 + 17, 1)   # several segments, aws-chunked over HTTPS
    s3.put_object(Bucket="tls-boto", Key="k", Body=body)
    assert s3.get_object(Bucket="tls-boto", Key="k")["Body"].read() == body
    # A client that does not trust the CA refuses to talk: the certificate is really checked.
    other_ca = TestCA(str(tmp_path), name="Someone Else's CA")
    stranger = boto3.client("s3", endpoint_url=c.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1", verify=other_ca.pem,
                            config=BotoConfig(retries={"max_attempts": 1}))
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        stranger.list_buckets()


def test_aws_cli_and_rclone_verify_the_certificate(tls_cluster, tmp_path):
    c = tls_cluster
    c.client().create_bucket(Bucket="tls-cli")
    src = tmp_path / "src.bin"
    src.write_bytes(_body(9 * 1024 * 1024 + 5, 2))   # multipart for the AWS CLI (8 MiB parts)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CA_BUNDLE": c.ca}
    aws = ["aws", "--endpoint-url", c.endpoint]
    subprocess.run(aws + ["s3", "cp", str(src), "s3://tls-cli/via-cli"], env=env, check=True, capture_output=True,
                   timeout=180)
    back = tmp_path / "back.bin"
    subprocess.run(aws + ["s3", "cp", "s3://tls-cli/via-cli", str(back)], env=env, check=True, capture_output=True,
                   timeout=180)
    assert back.read_bytes() == src.read_bytes()
    # one attempt, as rclone's below: the CLI retried the refused handshake for ~6 s of backoff
    env_no_ca = {**{k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}, "AWS_MAX_ATTEMPTS": "1"}
    refused = subprocess.run(aws + ["s3", "ls", "s3://tls-cli"], env=env_no_ca, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr

    conf = tmp_path / "rclone.conf"
    conf.write_text(f"[pocket]\ntype = s3\nprovider = Other\naccess_key_id = {ACCESS_KEY}\n"
                    f"secret_access_key = {SECRET_KEY}\nendpoint = {c.endpoint}\nregion = us-east-1\n")
    rclone_env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # rclone refuses to start with it
    rclone = ["rclone", "--config", str(conf), "--low-level-retries", "1", "--retries", "1"]
    out = subprocess.run(rclone + ["--ca-cert", c.ca, "copyto", str(src), "pocket:tls-cli/via-rclone"],
                         env=rclone_env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    got = tmp_path / "rclone-back.bin"
    out = subprocess.run(rclone + ["--ca-cert", c.ca, "copyto", "pocket:tls-cli/via-rclone", str(got)],
                         env=rclone_env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert got.read_bytes() == src.read_bytes()
    refused = subprocess.run(rclone + ["lsf", "pocket:tls-cli"], env=rclone_env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "certificate" in refused.stderr


def test_one_shot_tools_find_the_gateway_behind_tls(tls_cluster, tmp_path):
    """`pocket status`, disk moves and `migrate copy` ask the running gateway what it sees;
    they dialled plain http whatever the gateway served, so with TLS on they found no
    gateway and acted as if none ran (status said "not running", small copied objects were
    written past the gateway's packs). They now check the certificate the gateway serves,
    and a server with another certificate is not taken for it."""
    c = tls_cluster
    _, status = pocket(c, "status", "--json")
    assert status["gateway"]["running"] is True

    source = start_moto(str(tmp_path / "moto"))
    try:
        s3 = source.client()
        s3.create_bucket(Bucket="tls-src")
        bodies = {f"obj/{i}": _body(700 + i, 40 + i) for i in range(6)}
        for key, body in bodies.items():
            s3.put_object(Bucket="tls-src", Key=key, Body=body)
        _, report = pocket_migrate(c, source, "copy", "tls-src", "--json")
    finally:
        source.close()
    assert report["ok"] and report["buckets"][0]["written_via_gateway"] == len(bodies), report
    for key, body in bodies.items():
        assert c.client().get_object(Bucket="tls-src", Key=key)["Body"].read() == body

    # a certificate file that is not the one the gateway serves (same CA, another leaf)
    cfg = load_config(c.config)
    other = str(tmp_path / "other.crt")
    c.tls["ca"].issue(other, str(tmp_path / "other.key"))
    assert asyncio.run(gateway_view(cfg)) is not None
    cfg.gateway.tls_cert = other
    assert asyncio.run(gateway_view(cfg)) is None


def test_sighup_reloads_the_certificate_for_new_connections_only(tls_cluster):
    c = tls_cluster
    ca, cert, key = c.tls["ca"], c.tls["cert"], c.tls["key"]
    old = _https(c, ca.pem)
    old.request("GET", "/_pocket/health")
    assert old.getresponse().read() and _peer_serial(old) == c.tls["serial"]
    old_socket = old.sock

    new_serial = ca.issue(cert, key)
    c.signal("gateway", signal.SIGHUP)
    deadline = time.monotonic() + 30
    while True:
        fresh = _https(c, ca.pem)
        fresh.request("GET", "/_pocket/health")
        fresh.getresponse().read()
        if _peer_serial(fresh) == new_serial:
            break
        fresh.close()
        assert time.monotonic() < deadline, "a new connection never got the renewed certificate"
        time.sleep(0.1)
    fresh.close()

    # The keep-alive connection opened before the reload still works, on its original handshake.
    old.request("GET", "/_pocket/health")
    assert old.getresponse().status == 200
    assert old.sock is old_socket and _peer_serial(old) == c.tls["serial"]
    old.close()
    assert c.client().list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200

    # A broken pair (a key that is not the certificate's) is refused; the gateway keeps serving.
    with open(key, "wb") as f:
        f.write(open(c.tls["ca"].pem, "rb").read())
    c.signal("gateway", signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "still serving the previous certificate" not in c.log("gateway"):
        assert time.monotonic() < deadline, "the failed reload was not logged"
        time.sleep(0.1)
    after = _https(c, ca.pem)
    after.request("GET", "/_pocket/health")
    assert after.getresponse().status == 200 and _peer_serial(after) == new_serial
    after.close()


def test_pocket_up_serves_https_with_tls_cert_and_key(tmp_path):
    from .harness import free_port_run
    from .test_pocket_up import _stop, _up
    ca = TestCA(str(tmp_path))
    cert, key = str(tmp_path / "up.crt"), str(tmp_path / "up.key")
    ca.issue(cert, key)
    port = free_port_run(1)
    proc, info = _up(str(tmp_path / "data"), port, "--tls-cert", cert, "--tls-key", key)
    try:
        assert info["S3 endpoint"] == f"https://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=info["S3 endpoint"], aws_access_key_id=info["Access key"],
                          aws_secret_access_key=info["Secret key"], region_name="us-east-1", verify=ca.pem)
        s3.create_bucket(Bucket="up-tls")
        body = _body(300_000, 9)
        s3.put_object(Bucket="up-tls", Key="k", Body=body)
        assert s3.get_object(Bucket="up-tls", Key="k")["Body"].read() == body
    finally:
        _stop(proc)
