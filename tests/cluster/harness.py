"""Real clusters for probe tests: node and gateway processes on 127.0.0.1, real folders.

Tests kill, stop and restart these processes the way an operator's bad day would,
then check what a user would: the bytes read back are the bytes written.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config as BotoConfig

from bench.peers.ports import bindable
from storage import integrity

from . import archives, forkserver

CLUSTER_SECRET = "test-cluster-secret-0123456789abcdef"   # at least 32 bytes, as config requires
integrity.use_secret(CLUSTER_SECRET)   # tests read and forge archives with the cluster's keys
ACCESS_KEY = "PKTESTACCESSKEY000001"
SECRET_KEY = "test-secret-key-0123456789abcdefghij"
OTHER_ACCESS_KEY, OTHER_SECRET_KEY = "PKOTHERUSER000000002", "other-user-secret-0123456789"
OTHER_EMAIL = "other@example.com"   # grants by e-mail address resolve to the second user
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# Ports for test processes. A port found free and closed again is not reserved: with
# several pytest-xdist workers starting clusters at once, the kernel would hand two of them
# the same one. So each worker takes its own slice of 10000-32000 (below Linux's ephemeral
# range, where outgoing connections get theirs), starts at a random place in it (two suites
# on one machine rarely meet) and hands its ports out in turn, checking each is bindable.
_PORTS_FROM, _PORTS_TO = 10000, 32000


def _port_slice() -> range:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = int((os.environ.get("PYTEST_XDIST_WORKER") or "gw0")[2:])
    width = (_PORTS_TO - _PORTS_FROM) // workers
    return range(_PORTS_FROM + worker * width, _PORTS_FROM + (worker + 1) * width)


_slice = _port_slice()
_cursor = random.randrange(len(_slice))


def free_port_run(n: int) -> int:
    """A port p with p..p+n-1 all free, from this worker's slice (`pocket up --nodes` puts
    node i on port+1+i)."""
    global _cursor
    for _ in range(len(_slice) // n):
        if _cursor + n > len(_slice):
            _cursor = 0
        base = _slice[_cursor]
        _cursor += n
        if all(bindable(p) for p in range(base, base + n)):
            return base
    raise RuntimeError(f"no run of {n} free ports in {_slice}")


def free_ports(n: int) -> list[int]:
    return [free_port_run(1) for _ in range(n)]


def wait_http(url: str, timeout: float = 30.0, want=(200,), ca: str | None = None,
              alive: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers with a status in `want`; with `alive`, fail at once (with
    the reason) if that process exits meanwhile, instead of waiting out the timeout."""
    deadline = time.monotonic() + timeout
    last = None
    context = ssl.create_default_context(cafile=ca) if ca else None
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"{alive.args} exited with {alive.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as r:
                if r.status in want:
                    return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} not answering after {timeout}s: {last!r}")


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.1):
    """Poll `check()` until it returns something true (returned), or fail saying `what`
    did not happen: how tests wait for an effect instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def metric(endpoint: str, name: str, labels: str = "") -> float:
    """One sample of the gateway's (or a node's) Prometheus metrics; 0 if not exported yet.
    `labels` as exported, e.g. 'kind="current"'."""
    with urllib.request.urlopen(endpoint + "/_pocket/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


class ProcCluster:
    """`nodes` node processes with `disks_per_node` disks each, plus one gateway process;
    `capacity` gives disks (by id) a quota of that many bytes; `embedded`: no node
    processes, the gateway opens every disk itself (the `pocket up` default); `gateway`
    adds [gateway] settings (with `tls_cert`, the endpoint is https and `ca` the PEM file
    clients verify it with)."""

    def __init__(self, root: str, nodes: int = 6, disks_per_node: int = 1, zones: int = 1,
                 storage: dict | None = None, sections: dict[str, dict] | None = None,
                 capacity: dict[str, int] | None = None, embedded: bool = False,
                 gateway: dict | None = None, ca: str | None = None, held_socket: bool = False,
                 workers: int = 2):
        self.root = root
        self.env_all: dict[str, str] = {}   # extra environment of every process started
        # held_socket: the test holds the gateway's listening socket and hands it to each gateway
        # process it starts, as a systemd .socket unit does; a restart then refuses no connection.
        self.listener: socket.socket | None = None
        if held_socket:
            self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.embedded = embedded
        self.procs: dict[str, subprocess.Popen] = {}
        self.env: dict[str, dict[str, str]] = {}   # more environment for one process, by name
        ports = free_ports(nodes + 1)
        self.port = self.listener.getsockname()[1] if self.listener else ports[0]
        self.ca = ca
        self.endpoint = f"{'https' if (gateway or {}).get('tls_cert') else 'http'}://127.0.0.1:{self.port}"
        self.node_ids = [f"n{i + 1}" for i in range(nodes)]
        self.node_ports = dict(zip(self.node_ids, ports[1:]))
        # two worker processes unless a test says otherwise, whatever the machine's core count,
        # so every test runs the multi-process gateway (storage/workers.py)
        settings = {"heartbeat": 0.5, "workers": workers, **(gateway or {})}   # e.g. {"body_timeout": 2.0}
        st = {"node_timeout": 3.0, **(storage or {})}
        lines = ['data = "."', f'cluster_secret = "{CLUSTER_SECRET}"', "", "[gateway]",
                 f'listen = "127.0.0.1:{self.port}"'] + [f"{k} = {_toml(v)}" for k, v in settings.items()]
        lines += ["", "[storage]"] + [f"{k} = {_toml(v)}" for k, v in st.items()]
        for name, values in _with_test_defaults(sections).items():   # e.g. {"scrub": {"enabled": False}}
            lines += ["", f"[{name}]"] + [f"{k} = {_toml(v)}" for k, v in values.items()]
        lines += ["", "[[credentials]]", f'access_key = "{ACCESS_KEY}"', f'secret_key = "{SECRET_KEY}"']
        lines += ["", "[[credentials]]", f'access_key = "{OTHER_ACCESS_KEY}"', f'secret_key = "{OTHER_SECRET_KEY}"',
                  f'email = "{OTHER_EMAIL}"']
        self.disk_paths: dict[str, str] = {}
        for i, node in enumerate(self.node_ids):
            disks = []
            for j in range(disks_per_node):
                disk_id = f"{node}d{j + 1}"
                self.disk_paths[disk_id] = os.path.join(root, "disks", disk_id)
                quota = f", capacity = {capacity[disk_id]}" if capacity and disk_id in capacity else ""
                disks.append(f'{{ id = "{disk_id}", path = "disks/{disk_id}"{quota} }}')
            lines += ["", "[[nodes]]", f'id = "{node}"', f'zone = "zone{i % zones + 1}"',
                      *([] if embedded else [f'url = "http://127.0.0.1:{self.node_ports[node]}"']),
                      f"disks = [{', '.join(disks)}]"]
        os.makedirs(root, exist_ok=True)
        self.config = os.path.join(root, "pocket.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    @classmethod
    def existing(cls, root: str) -> "ProcCluster":
        """A cluster folder written earlier (an upgrade fixture) with its own pocket.toml and
        in-process disks; its gateway listens on a free port (POCKET_GATEWAY_LISTEN)."""
        c = cls.__new__(cls)
        c.root, c.config, c.embedded, c.procs = root, os.path.join(root, "pocket.toml"), True, {}
        c.ca, c.listener, c.node_ids, c.node_ports, c.disk_paths = None, None, [], {}, {}
        c.port = free_ports(1)[0]
        c.endpoint = f"http://127.0.0.1:{c.port}"
        c.env_all, c.env = {"POCKET_GATEWAY_LISTEN": f"127.0.0.1:{c.port}"}, {}
        return c

    def add_node(self, disks_per_node: int = 1, zone: str = "zone1") -> str:
        """Append a new node (with new disks) to the config file; start it with start_node()."""
        node = f"n{len(self.node_ids) + 1}"
        self.node_ids.append(node)
        self.node_ports[node] = free_ports(1)[0]
        disks = []
        for j in range(disks_per_node):
            disk_id = f"{node}d{j + 1}"
            self.disk_paths[disk_id] = os.path.join(self.root, "disks", disk_id)
            disks.append(f'{{ id = "{disk_id}", path = "disks/{disk_id}" }}')
        with open(self.config, "a") as f:
            f.write("\n".join(["", "[[nodes]]", f'id = "{node}"', f'zone = "{zone}"',
                               f'url = "http://127.0.0.1:{self.node_ports[node]}"',
                               f"disks = [{', '.join(disks)}]"]) + "\n")
        return node

    # processes -----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], listener: socket.socket | None = None) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env_all, **self.env.get(name, {})}
        with open(os.path.join(self.root, f"{name}.log"), "ab") as log:
            if listener is None:
                proc = forkserver.spawn(args, env, log.fileno(), log.fileno())
            else:   # systemd's socket passing: the socket is fd 3, LISTEN_FDS=1
                env["LISTEN_FDS"] = "1"
                proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, stdout=log, stderr=log,
                                        env=env, close_fds=False, preexec_fn=lambda: _as_fd3(listener.fileno()))
        self.procs[name] = proc
        return proc

    def start_node(self, node: str) -> None:
        self._spawn_node(node)
        self._wait_port(node, self.node_ports[node])

    def _spawn_node(self, node: str) -> None:
        self._spawn(node, ["node", "--config", self.config, "--id", node, "--init"])

    def _wait_port(self, name: str, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}:\n{self.log(name)[-3000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"nothing listening on {port} after {timeout}s")

    def start_gateway(self, ready: bool = True, timeout: float = 60.0) -> None:
        """Start the gateway and, by default, wait until /_pocket/ready says ready (enough disks
        up for a write quorum, every worker serving): tests that went on once the port opened
        raced the workers and the disk heartbeats, and flaked. `ready=False` for a test that
        expects a gateway that is not ready, or acts on one starting: it waits only until the
        port accepts (with a held socket, which accepts from the start: until it answers)."""
        self._spawn("gateway", ["gateway", "--config", self.config], self.listener)
        if ready or self.listener is not None:
            path = "/_pocket/ready" if ready else "/_pocket/health"
            try:
                wait_http(self.endpoint + path, timeout=timeout, ca=self.ca, alive=self.procs["gateway"])
            except RuntimeError as e:
                raise RuntimeError(f"{e}:\n{self.log('gateway')[-3000:]}") from None
        else:
            self._wait_port("gateway", self.port, timeout)

    def start(self) -> "ProcCluster":
        """Start every process; if one fails, stop those already started (no strays).
        The nodes start side by side (start-up is mostly imports), the gateway once they listen."""
        try:
            nodes = [] if self.embedded else self.node_ids
            for node in nodes:
                self._spawn_node(node)
            for node in nodes:
                self._wait_port(node, self.node_ports[node])
            self.start_gateway()
        except BaseException:
            self.close()
            raise
        return self

    def signal(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        tree = process_tree(proc.pid)
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            # a drain finishes the requests in flight and exits in seconds; one that waited out
            # gateway.shutdown_timeout (30 s) cut a request off, and fails the test here
            proc.wait(15)
            # a killed gateway's workers follow it a moment later (storage/workers.py); until
            # then they still accept on its port
            wait_for(f"{name}'s processes gone", lambda: not [p for p in tree if _alive(p)], timeout=30)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self, names: list[str]) -> None:
        """Stop these processes: all are asked at once, then waited for (each shuts down in
        its own time; one after the other, a cluster took seconds)."""
        for name in names:
            proc = self.procs.get(name)
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for name in names:
            self.stop(name)

    def close(self) -> None:
        """Stop every process (`stop_all`)."""
        self.stop_all(list(self.procs))
        if self.listener is not None:
            self.listener.close()

    def gateway_pid(self) -> int:
        return self.procs["gateway"].pid

    def gateway_workers(self) -> list[int]:
        """The gateway's worker processes (and its in-process disks' owner): its children."""
        return process_tree(self.gateway_pid())[1:]

    def log(self, name: str) -> str:
        with open(os.path.join(self.root, f"{name}.log"), errors="replace") as f:
            return f.read()

    # clients -------------------------------------------------------------------------------
    def client(self, retries: int = 3, user: tuple[str, str] = (ACCESS_KEY, SECRET_KEY), **kw):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=user[0],
                            aws_secret_access_key=user[1], region_name="us-east-1", verify=self.ca or None,
                            config=BotoConfig(retries={"max_attempts": retries, "mode": "standard"},
                                              connect_timeout=5, read_timeout=60, **kw))

    def archive_files(self) -> set[str]:
        """Every fragment archive on every disk (`archives.on_disks`)."""
        return archives.on_disks(self.disk_paths)


def pocket(c: ProcCluster, *args, ok=(0,)) -> tuple[int, dict | str]:
    """Run a one-shot `pocket` command against the cluster; its JSON report with --json."""
    out = forkserver.run([*args, "--config", c.config])
    assert out.returncode in ok, f"pocket {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.returncode, json.loads(out.stdout) if "--json" in args else out.stdout


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (a gateway's master, workers and disk owner)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _as_fd3(fd: int) -> None:
    """In the child, before exec: the socket becomes fd 3 and survives exec (the rest are CLOEXEC)."""
    if fd == 3:
        os.set_inheritable(3, True)
    else:
        os.dup2(fd, 3)


# No scrub or repair of the gateway's own: a probe runs the commands and sees their effect alone.
QUIET = {"scrub": {"enabled": False}, "repair": {"enabled": False}}

# Waits that only give work in flight time to finish, shortened for tests: what they
# protect must hold without them (a read that began before a slot switch degrades to a
# parity fragment, never fails), so a short wait makes a test stricter, not looser.
_TEST_SECTIONS = {"repair": {"move_settle": 0.1}}


def _with_test_defaults(sections: dict[str, dict] | None) -> dict[str, dict]:
    """The test's own settings first (a test may edit its config's text), then the defaults it did not set."""
    merged = {name: dict(values) for name, values in (sections or {}).items()}
    for name, defaults in _TEST_SECTIONS.items():
        own = merged.setdefault(name, {})
        own.update({k: v for k, v in defaults.items() if k not in own})
    return merged


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)
