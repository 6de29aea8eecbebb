"""Restarts without a failed request: SIGTERM drains, and a rolling restart of every node and
then the gateway under steady load fails nothing for a client retrying as boto3 does by
default, and loses no acknowledged byte."""
import http.client
import json
import random
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

from .harness import ProcCluster
from .signing import sign


def _body(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


class SteadyClient(threading.Thread):
    """PUTs unique objects and GETs earlier ones back, counting every request and failure."""

    SIZES = (1_000, 40_000, 300_000, 1_300_000)   # replicated, packed, EC in a pack, EC in files

    def __init__(self, cluster, bucket: str, seed: int):
        super().__init__(daemon=True)
        self.s3 = cluster.client()   # standard retry mode, 3 attempts: boto3's own defaults
        self.bucket, self.seed = bucket, seed
        self.acked: dict[str, int] = {}    # key -> seed of its body
        self.requests = self.retries = 0
        self.failures: list[tuple] = []
        self.halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(self.seed)
        n = 0
        while not self.halt.is_set():
            n += 1
            key, seed = f"c{self.seed}/obj-{n:05d}", self.seed * 1_000_000 + n
            body = _body(rng.choice(self.SIZES), seed)
            self._call("put", key, lambda: self.s3.put_object(Bucket=self.bucket, Key=key, Body=body))
            if not self.failures or self.failures[-1][1] != key:
                self.acked[key] = seed
            old = rng.choice(sorted(self.acked)) if self.acked else None
            if old:
                got = self._call("get", old, lambda: self.s3.get_object(Bucket=self.bucket, Key=old))
                if got is not None:
                    data = got["Body"].read()
                    want = self.acked[old]
                    if data != _body(len(data), want) or not data:
                        self.failures.append(("get", old, "wrong bytes"))

    def _call(self, what: str, key: str, fn):
        self.requests += 1
        try:
            out = fn()
        except Exception as e:   # a failure the client saw after its retries
            self.failures.append((what, key, repr(e)))
            return None
        self.retries += out["ResponseMetadata"].get("RetryAttempts", 0)
        return out


def _ready(c) -> dict:
    try:
        with urllib.request.urlopen(c.endpoint + "/_pocket/ready", timeout=5) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def _wait_progress(clients, extra: int = 5, timeout: float = 60) -> None:
    """Until every client made `extra` more requests (the load really runs across each step)."""
    start = [cl.requests for cl in clients]
    deadline = time.monotonic() + timeout
    while any(cl.requests < s + extra for cl, s in zip(clients, start)):
        assert time.monotonic() < deadline, "the steady clients stopped making progress"
        time.sleep(0.05)


def test_rolling_restart_of_every_node_and_the_gateway_fails_no_request(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), held_socket=True,
                    sections={"scrub": {"enabled": False}}).start()
    clients = []
    try:
        c.client().create_bucket(Bucket="steady")
        clients = [SteadyClient(c, "steady", seed) for seed in (1, 2)]
        for cl in clients:
            cl.start()
        _wait_progress(clients)
        for node in c.node_ids:
            c.signal(node, signal.SIGTERM)
            assert c.procs.pop(node).returncode == 0, c.log(node)[-2000:]
            _wait_progress(clients, extra=2)          # load runs while the node is away
            c.start_node(node)
            deadline = time.monotonic() + 60
            while _ready(c)["disks_down"]:            # an operator waits for health before the next one
                assert time.monotonic() < deadline, f"{node} never came back: {_ready(c)}"
                time.sleep(0.1)
            _wait_progress(clients)
        c.signal("gateway", signal.SIGTERM)
        assert c.procs.pop("gateway").returncode == 0
        c.start_gateway()
        _wait_progress(clients)
    finally:
        for cl in clients:
            cl.halt.set()
        for cl in clients:
            cl.join(120)
    try:
        failures = [f for cl in clients for f in cl.failures]
        requests = sum(cl.requests for cl in clients)
        print(f"rolling restart: {requests} requests, {sum(cl.retries for cl in clients)} retried, "
              f"{len(failures)} failed")
        assert not failures, failures
        assert requests >= 100
        assert "shutdown complete" in c.log("gateway")
        s3 = c.client()
        for cl in clients:
            for key, seed in cl.acked.items():
                data = s3.get_object(Bucket="steady", Key=key)["Body"].read()
                assert data == _body(len(data), seed) and len(data) in SteadyClient.SIZES, key
    finally:
        c.close()


def test_sigterm_turns_readiness_off_and_finishes_the_upload_in_flight(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True, gateway={"drain_delay": 1.0}).start()
    try:
        c.client().create_bucket(Bucket="drain")
        body = _body(3 * 1024 * 1024 + 11, 7)
        signed = sign("PUT", f"{c.endpoint}/drain/slow", {"Content-Length": str(len(body))})
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
        conn.putrequest("PUT", "/drain/slow", skip_accept_encoding=True)
        for name, value in signed.headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        conn.send(body[:1 << 20])

        gateway = c.procs["gateway"]
        gateway.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:   # a load balancer's health check sees it first
            state = _ready(c)
            if state.get("draining"):
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        assert state["ready"] is False
        for at in range(1 << 20, len(body), 256 << 10):   # a slow client, still sending
            conn.send(body[at:at + (256 << 10)])
            time.sleep(0.2)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        assert gateway.wait(30) == 0
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", c.port)) != 0   # nobody listens any more
        c.procs.pop("gateway")
        c.start_gateway()
        assert c.client().get_object(Bucket="drain", Key="slow")["Body"].read() == body
    finally:
        c.close()
