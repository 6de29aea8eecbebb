"""OpenStack Swift "all in one" with EC 4+2 as its default policy, the durable EC peer.

From Debian's packages (scripts/install-bench-tools installs them): proxy with the s3api
middleware and tempauth (path-style S3, keys test:tester / testing), object, container
and account servers and memcached, all on free ports of 127.0.0.1. The storage policy is
EC 4+2 (isa_l_rs_vand, 1 MiB segments) over six folder "disks" in six zones; config,
rings, data and logs all live in the work folder, nothing in /etc/swift.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
import urllib.error
import urllib.request

from . import Target, Unavailable, procs
from .ports import free_ports

PYTHON = "/usr/bin/python3"   # Debian's: python3-swift and python3-pyeclib are built for it
PACKAGES = "swift swift-proxy swift-object swift-account swift-container python3-pyeclib libisal2 memcached"
ACCESS_KEY, SECRET_KEY = "test:tester", "testing"
SERVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "swift_serve.py")
DISKS = 6

SWIFT_CONF = """[swift-hash]
swift_hash_path_suffix = pocketbench
swift_hash_path_prefix = pocketbench
[storage-policy:0]
name = replicated
[storage-policy:1]
name = ec42
policy_type = erasure_coding
ec_type = isa_l_rs_vand
ec_num_data_fragments = 4
ec_num_parity_fragments = 2
ec_object_segment_size = 1048576
default = yes
"""

SERVER_CONF = """[DEFAULT]
devices = {devices}
mount_check = false
user = {user}
swift_dir = {etc}
workers = auto
log_name = {name}
log_level = INFO
bind_ip = 127.0.0.1
bind_port = {port}
[pipeline:main]
pipeline = {name}-server
[app:{name}-server]
use = egg:swift#{name}
{extra}"""
SERVER_EXTRA = {"object": "[object-replicator]\n[object-reconstructor]\n[object-updater]\n[object-auditor]\n",
                "container": "[container-replicator]\n[container-updater]\n[container-auditor]\n[container-sync]\n",
                "account": "[account-replicator]\n[account-auditor]\n[account-reaper]\n"}

PROXY_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
user = {user}
swift_dir = {etc}
workers = auto
log_name = proxy
log_level = INFO
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:tempauth]
use = egg:swift#tempauth
user_admin_admin = admin .admin .reseller_admin
user_test_tester = testing .admin
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached}
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
[filter:symlink]
use = egg:swift#symlink
"""


def check_installed() -> str:
    """Swift's version; Unavailable when Debian's packages are missing."""
    missing = [tool for tool in ("swift-ring-builder", "memcached") if not shutil.which(tool)]
    version = ""
    if os.path.exists(PYTHON):
        out = subprocess.run([PYTHON, "-c", "import swift, pyeclib; print(swift.__version__)"],
                             capture_output=True, text=True)
        version = out.stdout.strip() if out.returncode == 0 else ""
    if missing or not version:
        raise Unavailable("swift: not installed; run scripts/install-bench-tools "
                          f"(Debian packages: {PACKAGES})")
    return version


def _write_config(etc: str, devices: str, ports: dict[str, int]) -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    with open(os.path.join(etc, "swift.conf"), "w") as f:
        f.write(SWIFT_CONF)
    for name, extra in SERVER_EXTRA.items():
        with open(os.path.join(etc, f"{name}-server.conf"), "w") as f:
            f.write(SERVER_CONF.format(devices=devices, user=user, etc=etc, name=name, port=ports[name], extra=extra))
    with open(os.path.join(etc, "proxy-server.conf"), "w") as f:
        f.write(PROXY_CONF.format(port=ports["proxy"], user=user, etc=etc, memcached=ports["memcached"]))


def _build_rings(etc: str, ports: dict[str, int]) -> None:
    """The EC ring (policy 1) has k+m = 6 "replicas" over six devices in six zones; the
    account, container and object-0 rings one device each."""
    def ring(*args: str, check: bool = True) -> None:
        out = subprocess.run(["swift-ring-builder", *args], cwd=etc, capture_output=True, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"swift-ring-builder {' '.join(args)} failed: {out.stdout}{out.stderr}")

    ring("object-1.builder", "create", "8", str(DISKS), "1")
    for d in range(1, DISKS + 1):
        ring("object-1.builder", "add", f"r1z{d}-127.0.0.1:{ports['object']}/d{d}", "1")
    for name in ("object", "container", "account"):
        ring(f"{name}.builder", "create", "8", "1", "1")
        ring(f"{name}.builder", "add", f"r1z1-127.0.0.1:{ports[name]}/d1", "1")
    for name in ("object", "object-1", "container", "account"):
        ring(f"{name}.builder", "rebalance", check=False)   # exits 1 on warnings about a tiny ring


def _auth_token(port: int) -> str | None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/auth/v1.0",
                                 headers={"X-Auth-User": ACCESS_KEY, "X-Auth-Key": SECRET_KEY})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.headers.get("X-Auth-Token")
    except OSError:
        return None


def _round_trip(port: int) -> bool:
    """A real EC write and read through the native API, and the container on policy ec42."""
    token = _auth_token(port)
    if not token:
        return False
    url = f"http://127.0.0.1:{port}/v1/AUTH_test/bench-ready"

    def call(method: str, path: str = "", data: bytes | None = None):
        req = urllib.request.Request(url + path, data=data, method=method, headers={"X-Auth-Token": token})
        return urllib.request.urlopen(req, timeout=10)

    try:
        call("PUT").close()
        call("PUT", "/probe", b"hello-ec").close()
        with call("GET", "/probe") as r:
            if r.read() != b"hello-ec":
                return False
        with call("HEAD") as r:
            policy = r.headers.get("X-Storage-Policy")
        call("DELETE", "/probe").close()
        call("DELETE").close()
    except OSError:
        return False
    if policy != "ec42":
        raise RuntimeError(f"swift is up but its default policy is {policy!r}, not ec42")
    return True


def start(work: str, timeout: float = 120.0) -> Target:
    version = check_installed()
    etc, devices, logs = (os.path.join(work, d) for d in ("etc", "srv", "log"))
    for d in [etc, logs] + [os.path.join(devices, f"d{i}") for i in range(1, DISKS + 1)]:
        os.makedirs(d, exist_ok=True)
    ports = dict(zip(("proxy", "object", "container", "account", "memcached"), free_ports(5)))
    _write_config(etc, devices, ports)
    _build_rings(etc, ports)
    started = [procs.spawn(["memcached", "-l", "127.0.0.1", "-p", str(ports["memcached"]), "-U", "0", "-m", "64"]
                           + (["-u", "root"] if os.getuid() == 0 else []), os.path.join(logs, "memcached.log"))]

    def stop() -> None:
        for proc in started:
            procs.stop(proc, 15)

    try:
        for name in ("object", "container", "account", "proxy"):
            started.append(procs.spawn([PYTHON, SERVE, etc, os.path.join(etc, f"{name}-server.conf"), f"{name}-server"],
                                       os.path.join(logs, f"{name}.log")))
        proxy_log = os.path.join(logs, "proxy.log")
        procs.wait_http(f"http://127.0.0.1:{ports['proxy']}/healthcheck", started[-1], proxy_log, timeout)
        deadline = time.monotonic() + timeout
        while not _round_trip(ports["proxy"]):
            dead = [p for p in started if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"swift's proxy answers but an EC write/read through it fails; logs in {logs}:\n"
                                   + "".join(procs.tail(os.path.join(logs, f), 500) for f in sorted(os.listdir(logs))))
            time.sleep(0.3)
    except BaseException:
        stop()
        raise
    return Target("swift", f"http://127.0.0.1:{ports['proxy']}", ACCESS_KEY, SECRET_KEY, stop=stop,
                  pid=started[-1].pid, roots=[p.pid for p in started],
                  describe=f"OpenStack Swift {version}, EC 4+2 (isa_l_rs_vand, 1 MiB segments), 6 folder disks")
