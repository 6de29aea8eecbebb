"""Power loss for a disk folder, after the fact: what survives is what was synced.

`snapshot()` records a disk at a moment taken as durable (the node idle after start-up);
the node then runs with the shim in shim/sitecustomize.py journaling every fsync; after
SIGKILL, `cut_power()` rewrites the folder to what a power loss at that instant would
leave under POSIX rules: a directory entry survives only if a synced listing of its
directory (or the snapshot) holds it with the same inode, and a file keeps only the bytes
its last sync covered. Any synced listing counts, not just the last one journaled: the
shim lists a folder before its sync and journals after it, so two threads syncing one
folder at once can journal the newer listing first, and the entries only it holds were
made durable all the same. Not modelled (lenient): deletes after a directory's sync stay
done, and bytes overwritten in place below a file's synced size keep their new value;
Pocket's archives and pack records are written once, so neither matters here."""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import threading

from .harness import wait_for

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")


def env(journal: str) -> dict[str, str]:
    """Environment for a node process whose syncs are journaled to `journal`."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": SHIM + (os.pathsep + path if path else ""), "POCKET_TEST_SYNC_JOURNAL": journal}


def snapshot(root: str, journal: str | list[str]) -> dict:
    """Every directory's entries and every file's size, taken as durable; syncs journaled
    before this moment are covered by it. `journal`: one, or those of every process that
    writes into the folder (a gateway beside its nodes writes archive files there too)."""
    root = os.path.realpath(root)
    journaled = {j: os.path.getsize(j) if os.path.exists(j) else 0 for j in _journals(journal)}
    dirs, sizes = {}, {}
    for folder, subdirs, files in os.walk(root):
        with os.scandir(folder) as it:
            dirs[folder] = {e.name: e.inode() for e in it}
        for name in files:
            st = os.stat(os.path.join(folder, name))
            sizes[st.st_ino] = st.st_size
    return {"dirs": dirs, "sizes": sizes, "journaled": journaled}


def _journals(journal: str | list[str]) -> list[str]:
    return [journal] if isinstance(journal, str) else list(journal)


def cut_power(root: str, journal: str | list[str], before: dict) -> dict:
    """Rewrite `root` as a power loss would have left it; returns what was dropped."""
    root = os.path.realpath(root)
    listings = {folder: set(entries.items()) for folder, entries in before["dirs"].items()}
    synced = dict(before["sizes"])
    for journal in _journals(journal):
        if not os.path.exists(journal):
            continue
        with open(journal) as f:
            f.seek(before["journaled"][journal])
            for line in f:
                if not line.endswith("\n"):
                    break                      # torn last line: its sync had not returned
                rec = json.loads(line)
                if "dir" in rec:
                    listings.setdefault(rec["dir"], set()).update(rec["entries"].items())
                else:
                    synced[rec["ino"]] = max(synced.get(rec["ino"], 0), rec["size"])
    dropped: dict = {"entries": 0, "bytes": 0, "examples": []}

    def walk(folder: str) -> None:
        durable = listings.get(folder, set())
        with os.scandir(folder) as it:
            entries = list(it)
        for e in entries:
            if (e.name, e.inode()) not in durable:
                dropped["entries"] += 1
                if len(dropped["examples"]) < 3:
                    dropped["examples"].append(os.path.relpath(e.path, root))
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path)
                else:
                    os.unlink(e.path)
            elif e.is_dir(follow_symlinks=False):
                walk(e.path)
            elif e.is_file(follow_symlinks=False):
                size, keep = e.stat().st_size, synced.get(e.inode(), 0)
                if size > keep:
                    dropped["bytes"] += size - keep
                    os.truncate(e.path, keep)
    walk(root)
    return dropped


class Outage:
    """Every node of a ProcCluster losing power under load, for the probe tests.

    Made before the cluster starts, so that each node journals its syncs; `start()` starts
    it (the disks as they are then count as durable); `under_load()` runs the clients and
    cuts the power while they still send."""

    def __init__(self, c):
        self.c = c
        # The gateway's own syncs count too: beside its nodes it writes archive files into
        # their folders (node/owned_disk.py), and a power cut takes it down with them.
        gateway = os.path.join(c.root, "gateway.syncs")
        self.journals = {node: [os.path.join(c.root, f"{node}.syncs"), gateway] for node in c.node_ids}
        for node in c.node_ids:
            c.env[node] = env(self.journals[node][0])
        c.env["gateway"] = env(gateway)
        self.durable: dict = {}

    def start(self) -> None:
        self.c.start()
        self.durable = {disk: snapshot(path, self.journals[disk[:-2]]) for disk, path in self.c.disk_paths.items()}

    def under_load(self, items, op, workers: int, at_least: int) -> tuple[dict, dict]:
        """`op(client, item)` -> (key, value) from `workers` threads over `items`, until
        `at_least` were acknowledged; then every node is SIGKILLed and its disks cut to what
        it had synced. Returns ({key: value} of what was acknowledged, what each disk lost)."""
        todo: queue.Queue = queue.Queue()
        for item in items:
            todo.put(item)
        acked: dict = {}
        crashed: list[BaseException] = []
        lock = threading.Lock()
        power = threading.Event()

        def work() -> None:
            client = self.c.client(retries=1)
            try:
                while not power.is_set():
                    try:
                        item = todo.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        key, value = op(client, item)
                    except Exception:    # not acknowledged: no promise
                        continue
                    with lock:
                        acked[key] = value
            except BaseException as e:
                crashed.append(e)
                raise

        threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        wait_for(f"{at_least} acknowledged requests", lambda: len(acked) >= at_least, timeout=120)
        for node in self.c.node_ids:        # the power goes, requests still in flight
            self.c.signal(node, signal.SIGKILL)
        power.set()
        for t in threads:
            t.join(120)
            assert not t.is_alive(), "a client thread hung"
        assert not crashed, crashed
        with lock:
            acked = dict(acked)
        dropped = {disk: cut_power(path, self.journals[disk[:-2]], self.durable[disk])
                   for disk, path in self.c.disk_paths.items()}
        return acked, dropped
