"""Probe tests for the node link and the disks as an attacker on the cluster network, or
with write access to a disk, would try them: replay a captured node request (with its
own body and with another), forge a fragment with a valid unkeyed checksum, talk to a
TLS node with the wrong certificate."""
import asyncio
import hashlib
import json
import os
import random
import struct
import threading
import time
import urllib.request

import aiohttp
import xxhash
from aiohttp import web

from storage import layout
from storage.node import auth, batch

from .archives import archive_parts, archives_of, read_archive
from .harness import QUIET, ProcCluster, pocket

# What goes over the node link: nodes on the gateway's host would be read and written in
# their folders instead (storage.same_host, node/same_host.py), past the tampering proxies.
OVER_THE_LINK = {"same_host": False}



class Recorder:
    """A man in the middle on the cluster network: forwards the gateway's requests to one
    node and keeps a copy of each (method, path, headers, body); `alter(path, body)` may
    change a body on the way, `alter_answer(path, body)` an answer's on the way back, and
    `answers` keeps each PUT's path and the node's status."""

    def __init__(self, target: str, alter=None):
        self.target = target
        self.alter = alter or (lambda _path, body: body)
        self.alter_answer = lambda _path, body: body
        self.seen: list[tuple[str, str, dict, bytes]] = []
        self.answers: list[tuple[str, int]] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        assert started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def forward(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-pocket-")}
            self.seen.append((request.method, request.path_qs, headers, body))
            body = self.alter(request.path, body)
            async with self.session.request(request.method, self.target + request.path_qs, headers=headers,
                                            data=body if body else None) as r:
                if request.method == "PUT":
                    self.answers.append((request.path, r.status))
                answer = self.alter_answer(request.path, await r.read())
                return web.Response(status=r.status, body=answer, headers={
                    k: v for k, v in r.headers.items() if k.lower() in ("content-type", "x-archive-size")})

        async def start():
            self.session = aiohttp.ClientSession()
            app = web.Application(client_max_size=64 << 20)
            app.router.add_route("*", "/{tail:.*}", forward)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = self.runner.addresses[0][1]
        self.loop.run_until_complete(start())
        started.set()
        self.loop.run_forever()

    def close(self) -> None:
        async def stop():
            await self.session.close()
            await self.runner.cleanup()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def _start_behind(c: ProcCluster, proxies: dict[str, Recorder], alters: dict) -> None:
    """Start the nodes, then the gateway reaching each node named in `alters` through a
    Recorder (kept in `proxies`, for the caller to close) that alters bodies so."""
    for node in c.node_ids:
        c.start_node(node)
    with open(c.config) as f:
        text = f.read()
    for node, alter in alters.items():
        url = f"http://127.0.0.1:{c.node_ports[node]}"
        proxies[node] = Recorder(url, alter=alter)
        text = text.replace(f'url = "{url}"', f'url = "http://127.0.0.1:{proxies[node].port}"')
    with open(c.config, "w") as f:
        f.write(text)
    c.start_gateway()


def _disk_state(c: ProcCluster, disks) -> dict[str, str]:
    """Every file under the disks (but the scrubber's state) and a digest of its bytes."""
    out = {}
    for disk in disks:
        for folder, _dirs, files in os.walk(c.disk_paths[disk]):
            for f in files:
                if f.endswith((".lock", "scrub-state.json")):
                    continue
                path = os.path.join(folder, f)
                with open(path, "rb") as fh:
                    out[path] = hashlib.sha256(fh.read()).hexdigest()
    return out


async def _send(url: str, method: str, headers: dict, body: bytes) -> int:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, headers=headers, data=body or None) as r:
            return r.status


def test_captured_node_requests_cannot_be_replayed_or_given_another_body(tmp_path):
    """`pocket up --nodes 2` shape: two node processes with three disks each. A recorder
    between the gateway and node n1 captures real PUTs of archives and batches of small
    archives, records and deletes; sent again, as they are or with another body, every
    one is refused and no disk changes."""
    c = ProcCluster(str(tmp_path / "cluster"), nodes=2, disks_per_node=3, storage=OVER_THE_LINK, sections=QUIET)
    recorder = None
    try:
        for node in c.node_ids:
            c.start_node(node)
        node_url = f"http://127.0.0.1:{c.node_ports['n1']}"
        recorder = Recorder(node_url)
        with open(c.config) as f:
            text = f.read()
        with open(c.config, "w") as f:
            f.write(text.replace(f'url = "{node_url}"', f'url = "http://127.0.0.1:{recorder.port}"'))
        c.start_gateway()
        s3 = c.client()
        s3.create_bucket(Bucket="bkt")
        big, small = random.Random(1).randbytes(3 << 20), random.Random(2).randbytes(1000)
        s3.put_object(Bucket="bkt", Key="big", Body=big)
        s3.put_object(Bucket="bkt", Key="small", Body=small)
        s3.put_object(Bucket="bkt", Key="gone", Body=b"x" * 10)
        s3.delete_object(Bucket="bkt", Key="gone")

        deadline = time.monotonic() + 30   # the deleted object's archives go in the background
        while len(c.archive_files()) != 6 + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(c.archive_files()) == 6 + 3
        puts = [r for r in recorder.seen if r[0] == "PUT"]
        assert any("/archives/" in r[1] and len(r[3]) > 256 << 10 for r in puts), "no archive file captured"
        batched = {op[0] for r in puts if r[1].endswith("/batch") for op in batch.unpack(r[3][:-auth.TAG_SIZE])}
        # the deleted object's archives are removed without an fsync of their own (FORGET)
        assert batched == {batch.ARCHIVE, batch.RECORD, batch.FORGET}, "small archive, tombstone, removal"
        n1_disks = [d for d in c.disk_paths if d.startswith("n1")]
        before = _disk_state(c, n1_disks)
        forged_body = random.Random(3).randbytes(1 << 16)
        for method, path, headers, body in puts:
            assert await_(_send(node_url + path, method, headers, body)) == 403, f"replay of {path} accepted"
            other = bytearray(body)
            other[len(other) // 2] ^= 0x01     # the same request with one bit of its body changed
            assert await_(_send(node_url + path, method, headers, bytes(other))) == 403, path
            assert await_(_send(node_url + path, method, headers, forged_body)) == 403, path
        assert _disk_state(c, n1_disks) == before
        assert "nonce already used" in c.log("n1")
        assert s3.get_object(Bucket="bkt", Key="big")["Body"].read() == big
        assert s3.get_object(Bucket="bkt", Key="small")["Body"].read() == small
    finally:
        c.stop("gateway")
        if recorder:
            recorder.close()
        c.close()


def _flip_first_archive(at: int):
    """An `alter` that changes byte `at` of the first archive upload it sees, and no other."""
    done = []

    def alter(path: str, body: bytes) -> bytes:
        if "/archives/" not in path or done or len(body) <= at:
            return body
        done.append(path)
        changed = bytearray(body)
        changed[at] ^= 0x20
        return bytes(changed)
    return alter


def test_archive_bytes_changed_on_the_way_to_a_node_are_refused_and_never_acknowledged(tmp_path):
    """`pocket up --nodes 6` shape, a man in the middle before n1 and before n2 changes
    one byte of the first archive upload each sees: a record payload byte for n1, a
    record head's checksum byte for n2. n1 answers 422 (the record's checksum), n2 403
    (the link tag); neither disk keeps any of it, not even a temp file; the PUT succeeds
    on the other four disks (write quorum 4) and reads back byte for byte."""
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6, storage={"write_quorum": 4, **OVER_THE_LINK},
                    sections=QUIET)
    proxies: dict[str, Recorder] = {}
    try:
        changes = {"n1": layout.HEADER_SIZE + layout.RECORD_OVERHEAD + 70_001,   # first record's payload
                   "n2": layout.HEADER_SIZE + 7}                                # first record head's checksum
        _start_behind(c, proxies, {node: _flip_first_archive(at) for node, at in changes.items()})
        s3 = c.client()
        s3.create_bucket(Bucket="bkt")
        body = random.Random(14).randbytes((3 << 20) + 4321)    # four segments, the last one short
        s3.put_object(Bucket="bkt", Key="tampered", Body=body)

        assert [status for path, status in proxies["n1"].answers if "/archives/" in path] == [422]
        assert [status for path, status in proxies["n2"].answers if "/archives/" in path] == [403]
        held = {archive_parts(ref)[0] for ref in archives_of(c, "bkt", "tampered")}
        assert held == {"n3d1", "n4d1", "n5d1", "n6d1"}
        for disk in ("n1d1", "n2d1"):
            assert os.listdir(os.path.join(c.disk_paths[disk], "tmp")) == [], disk
        assert "segment 0: record checksum mismatch" in c.log("gateway")   # disk n1d1 marked down: why
        assert "body tag missing or wrong" in c.log("n2")
        assert s3.get_object(Bucket="bkt", Key="tampered")["Body"].read() == body
    finally:
        c.stop("gateway")
        for proxy in proxies.values():
            proxy.close()
        c.close()


def _answer_changed_in_flight_is_caught(tmp_path, body: bytes, key: str, changed_answer, bit: int) -> None:
    """A man in the middle before every node; after the PUT, the one before the node of
    fragment 0 flips `bit` halfway through each answer `changed_answer(path, answer)` picks.
    Nodes do not check what they send, the gateway checks every record it receives: the
    GET is byte for byte the object, the damage is counted and logged."""
    c = ProcCluster(str(tmp_path / "cluster"), nodes=6, storage=OVER_THE_LINK, sections=QUIET)
    proxies: dict[str, Recorder] = {}
    try:
        _start_behind(c, proxies, dict.fromkeys(c.node_ids))
        s3 = c.client()
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key=key, Body=body)
        disk = next(archive_parts(ref)[0] for ref in archives_of(c, "bkt", key) if ref.endswith(".0"))
        changed = []

        def flip(path: str, answer: bytes) -> bytes:
            if not changed_answer(path, answer):
                return answer
            changed.append(path)
            middle = len(answer) // 2
            return answer[:middle] + bytes([answer[middle] ^ bit]) + answer[middle + 1:]
        proxies[disk[:-2]].alter_answer = flip

        assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == body
        assert changed, "the read did not go through the tampering proxy as expected"
        assert "checksum mismatch" in c.log("gateway")
        with urllib.request.urlopen(c.endpoint + "/_pocket/metrics") as r:
            assert "pocket_fragments_damaged_total 1.0" in r.read().decode()
    finally:
        c.stop("gateway")
        for proxy in proxies.values():
            proxy.close()
        c.close()


def test_fragment_bytes_changed_on_the_way_from_a_node_are_caught_and_read_from_parity(tmp_path):
    """Whole archives of a large object (ten segments, three windows of the reader), read
    from parity instead: nothing changed is served."""
    _answer_changed_in_flight_is_caught(
        tmp_path, random.Random(15).randbytes((9 << 20) + 1234), "k",
        lambda path, answer: "/archives/" in path and len(answer) >= 1 << 20, 0x01)


def test_small_archive_changed_in_a_fetch_answer_is_caught_and_read_from_another_copy(tmp_path):
    """Small reads come back in fetches (node/fetch.py), untagged like a GET's answer: the
    record's checksum catches a changed byte, and the GET reads another copy."""
    _answer_changed_in_flight_is_caught(
        tmp_path, random.Random(16).randbytes(60_001), "small",       # replica:3, packed
        lambda path, answer: path.endswith("/fetch") and len(answer) >= 50_000, 0x04)


def await_(coro):
    return asyncio.run(coro)


def _forge(raw: bytes, rng: random.Random) -> bytes:
    """What someone with write access to a disk but without the cluster secret can do:
    replace one segment's payload and give it a valid unkeyed (xxh3) checksum, the way
    format 1 archives were checked."""
    header = layout.ArchiveHeader.unpack(raw[:layout.HEADER_SIZE])
    length, want = layout.unpack_footer(raw[-layout.FOOTER_SIZE:])
    size = layout.unpack_trailer(raw[-layout.FOOTER_SIZE - length:-layout.FOOTER_SIZE], want)["size"]
    geo = layout.Geometry(size, header.segment_size, header.k)
    at = geo.record_offset(0)
    n = geo.record_length(0) - layout.RECORD_OVERHEAD
    fake = rng.randbytes(n)
    record = struct.pack("<IQ", n, xxhash.xxh3_64_intdigest(fake)) + fake
    return raw[:at] + record + raw[at + len(record):]


def _stored(c, seed: int, fragment: int) -> tuple[bytes, str]:
    """forge/k, 3 MiB (archives of their own, not packed: a forger rewrites a file), and the
    file of its fragment `fragment`."""
    data = random.Random(seed).randbytes(3 << 20)
    s3 = c.client()
    s3.create_bucket(Bucket="forge")
    s3.put_object(Bucket="forge", Key="k", Body=data)
    return data, next(ref for ref in sorted(c.archive_files()) if ref.endswith(f".{fragment}") and "#" not in ref)


def test_fragment_forged_on_disk_is_found_by_read_and_scrub_and_repaired(six):
    c = six
    s3 = c.client()
    data, victim = _stored(c, seed=4, fragment=0)
    original = read_archive(victim)
    forged = _forge(original, random.Random(5))
    assert forged != original and len(forged) == len(original)
    with open(victim, "wb") as f:
        f.write(forged)

    assert s3.get_object(Bucket="forge", Key="k")["Body"].read() == data   # served from the other fragments
    _, status = pocket(c, "status", "--json")
    assert status["repair_queue"] == 1, "the read did not queue the forged fragment for repair"

    _, report = pocket(c, "scrub", "--json", ok=(1,))
    assert {(r["disk"], r["archive"]) for r in report["corrupt"]} == {archive_parts(victim)}

    _, fixed = pocket(c, "repair", "--json")
    assert fixed["fragments"] == 1 and fixed["remaining"] == 0
    assert read_archive(victim) == original
    _, again = pocket(c, "scrub", "--json")
    assert again["corrupt"] == [] and again["missing"] == []
    assert s3.get_object(Bucket="forge", Key="k")["Body"].read() == data


def _rewrite_unkeyed(raw: bytes, rng: random.Random) -> bytes:
    """A whole format 1 archive with the same name and shape but other bytes: every
    checksum a valid xxh3, the manifest without `archive_format`. What a forger who knows
    the old format would write, hoping to pass as an archive from before keyed checksums."""
    header = layout.ArchiveHeader.unpack(raw[:layout.HEADER_SIZE])
    length, want = layout.unpack_footer(raw[-layout.FOOTER_SIZE:])
    manifest = layout.unpack_trailer(raw[-layout.FOOTER_SIZE - length:-layout.FOOTER_SIZE], want)
    manifest.pop("archive_format")
    geo = layout.Geometry(manifest["size"], header.segment_size, header.k)
    out = [layout.ArchiveHeader(header.version_id, header.index, header.k, header.m, header.segment_size,
                                header.block_size, fmt=layout.LEGACY_FORMAT).pack()]
    for j in range(geo.segments):
        fake = rng.randbytes(geo.record_length(j) - layout.RECORD_OVERHEAD)
        out.append(struct.pack("<IQ", len(fake), xxhash.xxh3_64_intdigest(fake)) + fake)
    body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    out.append(body + struct.pack("<IQ4s", len(body), xxhash.xxh3_64_intdigest(body), layout.FOOTER_MAGIC))
    return b"".join(out)


def test_whole_unkeyed_forgery_of_a_keyed_object_is_found_by_scrub_and_read(six):
    """The node alone cannot tell an old unkeyed archive from a forged one; the gateway's
    scrub pass can (the object's record says keyed), and so can every read."""
    c = six
    s3 = c.client()
    data, victim = _stored(c, seed=7, fragment=1)
    original = read_archive(victim)
    with open(victim, "wb") as f:
        f.write(_rewrite_unkeyed(original, random.Random(8)))

    _, report = pocket(c, "scrub", "--json", ok=(1,))
    assert [(r["disk"], r["archive"]) for r in report["corrupt"]] == [archive_parts(victim)]
    assert "unkeyed" in report["corrupt"][0]["problem"]
    assert s3.get_object(Bucket="forge", Key="k")["Body"].read() == data
    _, fixed = pocket(c, "repair", "--json")
    assert fixed["fragments"] == 1 and fixed["remaining"] == 0
    assert read_archive(victim) == original
