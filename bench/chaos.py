"""A chaos soak: writers keep writing while node processes and the gateway are killed,
stalled and restarted, and no read ever returns a state its key cannot be in (one command):

    python -m bench.chaos [--duration 300] [--writers 4] [--seed 1] [--corrupt | --wipe] [--embedded]

Starts a 6-node EC 4+2 cluster on 127.0.0.1 (the gateway's socket held by this process,
as systemd holds it, so a restarted gateway refuses no connection). Each writer owns 25
keys and PUTs (sizes from 0 bytes to 9 MiB, bodies unique), completes multipart uploads,
DELETEs and GETs them; it knows every state a key may be in (the last acknowledged one,
plus whatever a failed request may or may not have left). Meanwhile, every 2-5 s, one of:
SIGKILL a node, SIGSTOP one (a hung disk), restart one, SIGKILL the gateway and start it
again; never more than m = 2 nodes down at once. With `--corrupt` one node's disk also
gets bits flipped in its archives' payloads (then at most one other node is down,
so no stripe loses more than m), and the end runs `pocket scrub` and `pocket repair`.
With `--wipe` that disk is instead lost whole a few seconds in (its node killed, its
folder emptied, the node started on an empty disk, as after a replacement), and the end
runs the same commands; either way a second scrub must then find nothing missing or corrupt.
With `--embedded` the cluster is `pocket up`'s shape with two workers (the disks in one
owner process beside them): the chaos kills a worker or the disks' owner (the gateway's
master restarts it) or the whole gateway.

Fails (exit 1) if a GET ever returns bytes its key cannot hold, if any key's final state is
not one it may be in once everything is back, or if a process logged a traceback. Failed
requests during outages are counted, not failures: with 2 of 6 disks down EC 4+2 refuses
writes (quorum 5), and requests cut by a gateway kill fail. Not a timed benchmark: it
prints what happened, and CI runs a few seconds of it (tests/cluster/test_bench_harness.py).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections import Counter

import botocore.exceptions

from tests.cluster.archives import flip_payload_byte, on_disks
from tests.cluster.harness import ProcCluster, wait_http

MIB = 1 << 20
SIZES = [0, 1, 999, 100_003, MIB + 7, 5 * MIB + 3, 9 * MIB + 11]
BUCKET = "chaos"
FAILED = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)


def digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def outcome(e: Exception) -> str:
    if isinstance(e, botocore.exceptions.ClientError):
        return f"{e.response['ResponseMetadata'].get('HTTPStatusCode')} {e.response['Error'].get('Code')}"
    return type(e).__name__


class Soak:
    def __init__(self, cluster: ProcCluster, seed: int, corrupt: bool = False, wipe: bool = False):
        self.cluster, self.seed, self.corrupt, self.wipe, self.embedded = cluster, seed, corrupt, wipe, cluster.embedded
        self.victim = cluster.node_ids[-1] if corrupt or wipe else None   # its disk is damaged, it is never killed
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.counts: Counter = Counter()
        self.states: dict[str, set] = {}     # key -> digests it may hold (None: absent)
        self.down: set[str] = set()
        self.stalled: set[str] = set()

    def fail(self, what: str) -> None:
        self.errors.append(what)
        self.stop.set()

    # writers -------------------------------------------------------------------------
    def writer(self, w: int) -> None:
        rnd, s3 = random.Random(self.seed * 1000 + w), self.cluster.client(retries=2)
        keys = [f"w{w}/k{i}" for i in range(25)]
        for key in keys:
            self.states[key] = {None}
        try:
            while not self.stop.is_set():
                key, r = rnd.choice(keys), rnd.random()
                if r < 0.6:
                    self._put(s3, key, rnd.randbytes(rnd.choice(SIZES)))
                elif r < 0.7:
                    self._multipart(s3, key, rnd.randbytes(10 * MIB + rnd.randrange(1, 3 * MIB)))
                elif r < 0.8:
                    self._delete(s3, key)
                else:
                    self.check(s3, key, strict=False)
        except Exception:
            self.fail(f"writer {w}: {traceback.format_exc()}")

    def _put(self, s3, key: str, data: bytes) -> None:
        try:
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            self.states[key] = {digest(data)}
            self.counts["put ok"] += 1
        except FAILED as e:
            self.states[key].add(digest(data))
            self.counts[f"put failed: {outcome(e)}"] += 1

    def _multipart(self, s3, key: str, data: bytes) -> None:
        try:
            upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
            parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=n,
                                                             Body=data[at:at + 5 * MIB])["ETag"]}
                     for n, at in enumerate(range(0, len(data), 5 * MIB), 1)]
            self.states[key].add(digest(data))    # from the completion on it may be there
            s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
            self.states[key] = {digest(data)}
            self.counts["multipart ok"] += 1
        except FAILED as e:
            self.counts[f"multipart failed: {outcome(e)}"] += 1

    def _delete(self, s3, key: str) -> None:
        try:
            s3.delete_object(Bucket=BUCKET, Key=key)
            self.states[key] = {None}
            self.counts["delete ok"] += 1
        except FAILED as e:
            self.states[key].add(None)
            self.counts[f"delete failed: {outcome(e)}"] += 1

    def check(self, s3, key: str, strict: bool) -> None:
        """A GET returns a state the key may be in; unless `strict`, a failed GET is only counted."""
        try:
            got = digest(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] != "NoSuchKey":
                if strict:
                    raise
                self.counts[f"get failed: {outcome(e)}"] += 1
                return
            got = None
        except botocore.exceptions.BotoCoreError as e:
            if strict:
                raise
            self.counts[f"get failed: {outcome(e)}"] += 1
            return
        if got not in self.states[key]:
            self.fail(f"GET {key} read {got}, which it cannot hold (it may hold {self.states[key]})")
        self.counts["get ok"] += 1

    # chaos ---------------------------------------------------------------------------
    def chaos(self) -> None:
        rnd = random.Random(self.seed)
        most_down = 1 if self.victim else 2
        try:
            while not self.stop.wait(rnd.uniform(2, 5)):
                possible = ["gateway"] + ["corrupt"] * (2 * self.corrupt)
                if self.wipe:
                    self.wipe = False
                    possible = ["wipe"]
                if self.embedded:
                    possible += ["child", "child"]
                else:
                    possible += ["kill", "kill", "stall"] if len(self.down) < most_down else []
                    possible += ["restart", "restart"] if self.down else []
                action = rnd.choice(possible)
                if action == "corrupt":
                    self._flip_a_byte(rnd)
                elif action == "wipe":
                    self.cluster.signal(self.victim, signal.SIGKILL)
                    shutil.rmtree(self.cluster.disk_paths[f"{self.victim}d1"])
                    self.cluster.start_node(self.victim)
                elif action in ("kill", "stall"):
                    self._take_down(rnd.choice([n for n in self.cluster.node_ids
                                                if n not in self.down and n != self.victim]), action)
                elif action == "restart":
                    self._bring_back(rnd.choice(sorted(self.down)))
                elif action == "child":   # a worker, or the disks' owner: the master starts another
                    os.kill(rnd.choice(self.cluster.gateway_workers()), signal.SIGKILL)
                else:
                    self.cluster.signal("gateway", signal.SIGKILL)
                    self.cluster.start_gateway(ready=False)
                self.counts[f"chaos: {action}"] += 1
        except Exception:
            self.fail(f"chaos: {traceback.format_exc()}")
        finally:
            for node in sorted(self.down):
                self._bring_back(node)

    def _take_down(self, node: str, how: str) -> None:
        self.down.add(node)
        if how == "kill":
            self.cluster.signal(node, signal.SIGKILL)
        else:
            self.cluster.procs[node].send_signal(signal.SIGSTOP)
            self.stalled.add(node)

    def _bring_back(self, node: str) -> None:
        if node in self.stalled:
            self.cluster.procs[node].send_signal(signal.SIGCONT)
            self.stalled.discard(node)
        else:
            self.cluster.start_node(node)
        self.down.discard(node)

    def _flip_a_byte(self, rnd: random.Random) -> None:
        """Bit rot in one live archive's payload on the damaged node's disk (a file or a
        pack record: tests/cluster/archives.py). One a writer replaces or deletes while
        it is picked is skipped, and so is an empty object's, which has no payload."""
        disk = f"{self.victim}d1"
        archives = sorted(on_disks({disk: self.cluster.disk_paths[disk]}))
        if archives:
            with contextlib.suppress(FileNotFoundError, ValueError):
                flip_payload_byte(rnd.choice(archives), rnd)

    # the end -------------------------------------------------------------------------
    def settle(self) -> None:
        """Everything back; after damage, a scrub, a repair and a scrub that must find nothing;
        then every key read strictly."""
        wait_http(self.cluster.endpoint + "/_pocket/ready", timeout=60)
        if self.victim:
            for n, command in enumerate(("scrub", "repair", "scrub")):
                done = subprocess.run([sys.executable, "-m", "cli", command, "--config", self.cluster.config],
                                      capture_output=True, text=True, timeout=600)
                print(f"pocket {command}: exit {done.returncode}\n{done.stdout.strip()}")
                if n == 2 and done.returncode != 0:
                    self.fail(f"a scrub after the repair still finds damage:\n{done.stdout}{done.stderr}")
        s3 = self.cluster.client(retries=2)
        for key in sorted(self.states):
            self.check(s3, key, strict=True)
            self.counts["final: " + ("one state" if len(self.states[key]) == 1 else "either of two or more")] += 1
        for name in self.cluster.procs:
            log = self.cluster.log(name)
            if "Traceback" in log:
                self.fail(f"{name} logged a traceback:\n{log[log.index('Traceback'):][:3000]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=300.0, help="seconds of chaos")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    damage = p.add_mutually_exclusive_group()
    damage.add_argument("--corrupt", action="store_true", help="also flip bytes on one node's disk")
    damage.add_argument("--wipe", action="store_true", help="also lose one node's disk whole, once")
    p.add_argument("--embedded", action="store_true", help="pocket up's shape, two workers and the disks' owner")
    args = p.parse_args(argv)
    root = tempfile.mkdtemp(prefix="pocket-chaos-")
    cluster = ProcCluster(os.path.join(root, "cluster"), nodes=6, held_socket=True, storage={"node_timeout": 2.0},
                          embedded=args.embedded)
    soak = Soak(cluster, args.seed, args.corrupt, args.wipe)
    try:
        cluster.start()
        cluster.client().create_bucket(Bucket=BUCKET)
        threads = [threading.Thread(target=soak.writer, args=(w,)) for w in range(args.writers)]
        threads.append(threading.Thread(target=soak.chaos))
        for t in threads:
            t.start()
        soak.stop.wait(args.duration)
        soak.stop.set()
        for t in threads:
            t.join()
        if not soak.errors:
            soak.settle()
    except Exception:
        soak.fail(traceback.format_exc())
    finally:
        cluster.close()
    for what, n in sorted(soak.counts.items()):
        print(f"{n:7d}  {what}")
    if soak.errors:
        print("FAILED:", *soak.errors[:5], f"(the cluster's folder is kept: {root})", sep="\n")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    print("OK: every read returned a state its key could hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
