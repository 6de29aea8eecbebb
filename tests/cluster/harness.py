"""Real clusters for probe tests: node and gateway processes on 127.0.0.1, real folders.

Tests kill, stop and restart these processes the way an operator's bad day would,
then check what a user would: the bytes read back are the bytes written.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config as BotoConfig

from storage import integrity
from storage.node import packformat

CLUSTER_SECRET = "test-cluster-secret-0123456789abcdef"   # at least 32 bytes, as config requires
integrity.use_secret(CLUSTER_SECRET)   # tests read and forge archives with the cluster's keys
ACCESS_KEY = "PKTESTACCESSKEY000001"
SECRET_KEY = "test-secret-key-0123456789abcdefghij"
OTHER_ACCESS_KEY, OTHER_SECRET_KEY = "PKOTHERUSER000000002", "other-user-secret-0123456789"
OTHER_EMAIL = "other@example.com"   # grants by e-mail address resolve to the second user
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def free_port_run(n: int) -> int:
    """A port p with p..p+n-1 all free (`pocket up --nodes` puts node i on port+1+i)."""
    for _ in range(200):
        base = free_ports(1)[0]
        if base + n >= 65535:
            continue
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no run of {n} free ports found")


def wait_http(url: str, timeout: float = 30.0, want=(200,)) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status in want:
                    return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} not answering after {timeout}s: {last!r}")


class ProcCluster:
    """`nodes` node processes with `disks_per_node` disks each, plus one gateway process;
    `capacity` gives disks (by id) a quota of that many bytes; `embedded`: no node
    processes, the gateway opens every disk itself (the `pocket up` default)."""

    def __init__(self, root: str, nodes: int = 6, disks_per_node: int = 1, zones: int = 1,
                 storage: dict | None = None, sections: dict[str, dict] | None = None,
                 capacity: dict[str, int] | None = None, embedded: bool = False, gateway: dict | None = None):
        self.root = root
        self.embedded = embedded
        self.procs: dict[str, subprocess.Popen] = {}
        ports = free_ports(nodes + 1)
        self.port = ports[0]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.node_ids = [f"n{i + 1}" for i in range(nodes)]
        self.node_ports = dict(zip(self.node_ids, ports[1:]))
        settings = {"heartbeat": 0.5, **(gateway or {})}   # e.g. {"body_timeout": 2.0}
        st = {"node_timeout": 3.0, **(storage or {})}
        lines = ['data = "."', f'cluster_secret = "{CLUSTER_SECRET}"', "", "[gateway]",
                 f'listen = "127.0.0.1:{self.port}"'] + [f"{k} = {v!r}" for k, v in settings.items()]
        lines += ["", "[storage]"] + [f"{k} = {_toml(v)}" for k, v in st.items()]
        for name, values in (sections or {}).items():   # e.g. {"scrub": {"enabled": False}}
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
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(os.path.join(self.root, f"{name}.log"), "ab")
        proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, stdout=log, stderr=log,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs[name] = proc
        return proc

    def start_node(self, node: str) -> None:
        self._spawn(node, ["node", "--config", self.config, "--id", node, "--init"])
        self._wait_port(node, self.node_ports[node])

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

    def start_gateway(self) -> None:
        self._spawn("gateway", ["gateway", "--config", self.config])
        self._wait_port("gateway", self.port)

    def start(self) -> "ProcCluster":
        """Start every process; if one fails, stop those already started (no strays)."""
        try:
            for node in [] if self.embedded else self.node_ids:
                self.start_node(node)
            self.start_gateway()
            wait_http(self.endpoint + "/_pocket/ready")
        except BaseException:
            self.close()
            raise
        return self

    def signal(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(30)

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

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def gateway_pid(self) -> int:
        return self.procs["gateway"].pid

    def log(self, name: str) -> str:
        with open(os.path.join(self.root, f"{name}.log"), errors="replace") as f:
            return f.read()

    # clients -------------------------------------------------------------------------------
    def client(self, retries: int = 3, user: tuple[str, str] = (ACCESS_KEY, SECRET_KEY), **kw):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=user[0],
                            aws_secret_access_key=user[1], region_name="us-east-1",
                            config=BotoConfig(retries={"max_attempts": retries, "mode": "standard"},
                                              connect_timeout=5, read_timeout=60, **kw))

    def archive_files(self) -> set[str]:
        """Every fragment archive on every disk: its file's path, or `<disk>/packs#<name>`
        for a small archive stored in the disk's pack files (read without disturbing the
        node that writes them)."""
        found = set()
        for disk, path in self.disk_paths.items():
            for folder, _dirs, files in os.walk(os.path.join(path, "archives")):
                found.update(os.path.join(folder, f) for f in files)
            packs_dir = os.path.join(path, "packs")
            found.update(f"{packs_dir}#{name}" for name in packformat.live_archives(packs_dir))
        return found


def pocket(c: ProcCluster, *args, ok=(0,)) -> tuple[int, dict | str]:
    """Run a one-shot `pocket` command against the cluster; its JSON report with --json."""
    out = subprocess.run([sys.executable, "-m", "cli", *args, "--config", c.config], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode in ok, f"pocket {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.returncode, json.loads(out.stdout) if "--json" in args else out.stdout


def archive_parts(ref: str) -> tuple[str, str]:
    """(disk id, archive name) of an `archive_files()` entry, packed or not."""
    if "#" in ref:
        packs_dir, name = ref.split("#", 1)
        return os.path.basename(os.path.dirname(packs_dir)), name
    return os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(ref)))), os.path.basename(ref)


def archive_span(ref: str) -> tuple[str, int, int]:
    """(file, offset, length) holding an archive: its own file, or its record in a pack."""
    if "#" in ref:
        packs_dir, name = ref.split("#", 1)
        return packformat.live_archives(packs_dir)[name]
    return ref, 0, os.path.getsize(ref)


def read_archive(ref: str) -> bytes:
    path, offset, length = archive_span(ref)
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def flip_archive_bit(ref: str, at: int, bit: int = 0x10) -> None:
    """Bit rot at byte `at` of an archive, wherever the archive is stored."""
    path, offset, length = archive_span(ref)
    assert 0 <= at < length
    with open(path, "r+b") as f:
        f.seek(offset + at)
        b = f.read(1)
        f.seek(offset + at)
        f.write(bytes([b[0] ^ bit]))


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)
