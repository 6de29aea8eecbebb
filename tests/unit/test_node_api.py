"""The node's internal HTTP API (storage/node/server.py) driven through RemoteDisk."""
from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest
from aiohttp import web

from storage import layout
from storage.layout import Geometry
from storage.node import archive_tag, auth, batch, fetch
from storage.node.client import DiskUnavailable, RemoteDisk
from storage.node.server import build_app
from storage.node.store import ArchiveMissing, DiskStore

from .test_store import VID, VID2, files_under, make_archive

SECRET = "s3cr3t-cluster-key-0123456789abcdef"


async def chunked(data: bytes, step: int = 4096):
    for i in range(0, len(data), step):
        yield data[i:i + step]


class Node:
    """A real node app on 127.0.0.1 with two disks, plus a client session."""

    def __init__(self, tmp_path):
        self.root = tmp_path
        self.stores = {d: DiskStore(d, str(tmp_path / d)).open() for d in ("d1", "d2")}

    async def __aenter__(self):
        self.runner = web.AppRunner(build_app("node1", self.stores, SECRET))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc):
        if not self.session.closed:
            await self.session.close()
        await self.runner.cleanup()

    def disk(self, disk_id="d1", secret=SECRET) -> RemoteDisk:
        return RemoteDisk(disk_id, self.url, secret, self.session, node_id="node1")

    async def raw(self, method, path, headers=None, data=None) -> tuple[int, bytes]:
        async with self.session.request(method, self.url + path, headers=headers or {}, data=data) as r:
            return r.status, await r.read()

    def signed(self, method, path, secret=SECRET, now=None):
        return auth.sign(secret, method, path, "node1", now)


async def signed_archive(headers: dict, archive: bytes) -> bytes:
    """An archive and its tag, as RemoteDisk sends them."""
    return b"".join([bytes(c) async for c in archive_tag.signed_archive(SECRET, headers, chunked(archive))])


def run(tmp_path, body, stores: dict | None = None):
    async def main():
        async with Node(tmp_path) as node:
            if stores is not None:
                stores.update(node.stores)
            return await body(node)
    return asyncio.run(main())


def test_archive_round_trip_over_http(tmp_path):
    archive, manifest = make_archive(size=200_000, segment_size=65536)
    name = f"{VID}.0"

    async def body(node):
        d = node.disk()
        assert await d.put_archive(name, chunked(archive)) == len(archive)
        assert await d.stat(name) == len(archive)
        assert await d.read(name, 0, len(archive)) == archive
        assert await d.read(name, 100, 1000) == archive[100:1100]
        assert await d.read(name, len(archive) - 10, 1 << 40) == archive[-10:]
        geo = Geometry(200_000, 65536, 4)
        off, ln = geo.span(1, 2)
        blob = await d.read(name, off, ln)
        assert layout.unpack_record(blob[:geo.record_length(1)])
        assert await d.read_manifest(name) == manifest
        # the other disk of the node is separate
        assert await node.disk("d2").stat(name) is None
        return True

    stores = {}
    assert run(tmp_path, body, stores)
    path, offset, length = stores["d1"].packs.location(name)  # a 50 kB archive is packed
    with open(path, "rb") as f:
        f.seek(offset)
        assert f.read(length) == archive
    assert files_under(tmp_path / "d1" / "archives") == []
    assert files_under(tmp_path / "d2" / "archives") == []
    assert files_under(tmp_path / "d2" / "packs") == []


def test_stats_keep_the_connection_for_the_next_request(tmp_path):
    """A stat whose answer closed its connection (a bodiless HEAD's did) made every repair
    of a small object open a new one to the same node; found or not, the one connection
    must serve them all."""
    archive, _ = make_archive(size=90_000, segment_size=65536)
    opened = []
    trace = aiohttp.TraceConfig()

    async def on_create(_session, _ctx, _params):
        opened.append(1)
    trace.on_connection_create_end.append(on_create)

    async def body(node):
        await node.session.close()
        node.session = aiohttp.ClientSession(trace_configs=[trace])
        d = node.disk()
        assert await d.stat(f"{VID}.0") is None
        assert await d.put_archive(f"{VID}.0", chunked(archive)) == len(archive)
        assert await d.stat(f"{VID}.0") == len(archive)
        assert await d.stat(f"{VID2}.3") is None
        assert await d.read(f"{VID}.0", 7, 11) == archive[7:18]
        return len(opened)
    assert run(tmp_path, body) == 1


def test_list_records_and_delete_over_http(tmp_path):
    async def body(node):
        d = node.disk()
        want = {}
        for vid in (VID, VID2):
            for index in (0, 3):
                data, _ = make_archive(vid, index, seed=index)
                await d.put_archive(f"{vid}.{index}", chunked(data))
                want[f"{vid}.{index}"] = len(data)
        assert dict([x async for x in d.iter_archives()]) == want
        assert [x async for x in node.disk("d2").iter_archives()] == []

        await d.put_record(VID, b'{"deleted": true}')
        await d.put_record(VID2, b"{}")
        assert dict([x async for x in d.iter_records()]) == {VID: b'{"deleted": true}', VID2: b"{}"}

        assert await d.delete_archive(f"{VID}.0") is True
        assert await d.delete_archive(f"{VID}.0") is False
        assert await d.stat(f"{VID}.0") is None
        with pytest.raises(ArchiveMissing):
            await d.read(f"{VID}.0", 0, 10)
        with pytest.raises(ArchiveMissing):
            await d.read_manifest(f"{VID}.0")
        del want[f"{VID}.0"]
        assert dict([x async for x in d.iter_archives()]) == want

        health = await d.health()
        assert health["disk"] == "d1" and health["total"] > 0
        return True

    assert run(tmp_path, body)


def test_truncated_upload_is_refused_over_http(tmp_path):
    archive, _ = make_archive()

    async def body(node):
        d = node.disk()
        with pytest.raises(layout.CorruptFragment):
            await d.put_archive(f"{VID}.0", chunked(archive[:-3]))
        assert await d.stat(f"{VID}.0") is None
        return True

    assert run(tmp_path, body)
    assert files_under(tmp_path / "d1" / "archives") == []
    assert files_under(tmp_path / "d1" / "tmp") == []


def _bad_auth_cases(method, path):
    now = time.time()
    return {
        "missing": {},
        "only-time": {auth.TIME_HEADER: str(int(now))},
        "wrong-secret": auth.sign("not-the-secret", method, path, "node1"),
        "stale": auth.sign(SECRET, method, path, "node1", now - auth.MAX_SKEW - 60),
        "future": auth.sign(SECRET, method, path, "node1", now + auth.MAX_SKEW + 60),
        "other-path": auth.sign(SECRET, method, path + "x", "node1"),
        "other-method": auth.sign(SECRET, "GET" if method != "GET" else "PUT", path, "node1"),
        "other-node": auth.sign(SECRET, method, path, "node2"),
        "before-node-start": auth.sign(SECRET, method, path, "node1", now - 5),
        "garbage-time": {auth.TIME_HEADER: "soon", auth.AUTH_HEADER: "00"},
        "older-link": {k: v for k, v in auth.sign(SECRET, method, path, "node1").items() if k != auth.LINK_HEADER},
    }


@pytest.mark.parametrize("case", list(_bad_auth_cases("PUT", "/x")))
def test_unauthenticated_requests_get_403_and_change_nothing(tmp_path, case):
    archive, manifest = make_archive()
    keep = f"{VID2}.1"

    async def body(node):
        await node.disk().put_archive(keep, chunked(make_archive(VID2, 1)[0]))
        before = files_under(tmp_path)

        put_path = f"/v1/d1/archives/{VID}.0"
        status, _ = await node.raw("PUT", put_path, _bad_auth_cases("PUT", put_path)[case], archive)
        assert status == 403

        batch_path = "/v1/d1/batch"   # records and deletes
        ops = batch.pack([(batch.RECORD, VID, b"{}"), (batch.DELETE, keep, b"")])
        status, _ = await node.raw("PUT", batch_path, _bad_auth_cases("PUT", batch_path)[case], ops)
        assert status == 403

        for path in (f"/v1/d1/archives/{keep}", f"/v1/d1/archives/{keep}/manifest",
                     "/v1/d1/archives", "/v1/d1/records", "/v1/health"):
            status, data = await node.raw("GET", path, _bad_auth_cases("GET", path)[case])
            assert status == 403, path
            assert b"PKFA" not in data and VID2.encode() not in data

        assert files_under(tmp_path) == before
        # the legitimate client still sees exactly what was there
        assert [n async for n, _ in node.disk().iter_archives()] == [keep]
        assert [x async for x in node.disk().iter_records()] == []
        return True

    assert run(tmp_path, body)


def test_client_with_wrong_secret_is_refused(tmp_path):
    archive, _ = make_archive()

    async def body(node):
        bad = node.disk(secret="wrong")
        with pytest.raises(DiskUnavailable, match="403"):
            await bad.put_archive(f"{VID}.0", chunked(archive))
        with pytest.raises(DiskUnavailable):
            await bad.stat(f"{VID}.0")
        assert await node.disk().stat(f"{VID}.0") is None
        return True

    assert run(tmp_path, body)
    assert files_under(tmp_path / "d1" / "archives") == []
    assert files_under(tmp_path / "d1" / "tmp") == []


@pytest.mark.parametrize("name", ["notanid", f"{VID.upper()}.0", f"{VID}.1234", VID,
                                  f"..%2F{VID}.0", "..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"])
def test_bad_names_get_400(tmp_path, name):
    archive, _ = make_archive()

    async def body(node):
        before = files_under(tmp_path)
        for method, path, data in [("PUT", f"/v1/d1/archives/{name}", archive),
                                   ("GET", f"/v1/d1/archives/{name}", None),
                                   ("GET", f"/v1/d1/archives/{name}/manifest", None)]:
            headers = node.signed(method, path)
            data = auth.tag(SECRET, headers, data) if data is not None else None
            status, _ = await node.raw(method, path, headers, data)
            assert status == 400, (method, path, status)
        assert files_under(tmp_path) == before
        return True

    assert run(tmp_path, body)


@pytest.mark.parametrize("query", ["offset=abc", "length=1e3", "offset=-1"])
def test_bad_range_parameters_get_400(tmp_path, query):
    archive, _ = make_archive()

    async def body(node):
        await node.disk().put_archive(f"{VID}.0", chunked(archive))
        path = f"/v1/d1/archives/{VID}.0?{query}"
        status, _ = await node.raw("GET", path, node.signed("GET", path))
        assert status == 400, status
        return True

    assert run(tmp_path, body)


def test_unknown_disk_is_404(tmp_path):
    async def body(node):
        path = f"/v1/d9/archives/{VID}.0"
        status, _ = await node.raw("GET", path, node.signed("GET", path))
        assert status == 404
        return True

    assert run(tmp_path, body)


class Abort(Exception):
    pass


# 100 bytes: the node still holds them in memory (an archive may yet fit a pack); 3 MiB:
# past the pack threshold, the node writes a temp file, which the abort must remove.
@pytest.mark.parametrize("sent_before_abort, node_has_a_file", [(100, False), (3 << 20, True)])
def test_client_abort_mid_upload_leaves_nothing(tmp_path, sent_before_abort, node_has_a_file):
    archive, _ = make_archive(size=4 << 20, segment_size=1 << 20, k=1, m=2)
    assert len(archive) > sent_before_abort + 65536
    never_started = []

    async def aborting():
        sent = 0
        for i in range(0, len(archive), 65536):
            if sent >= sent_before_abort:
                if node_has_a_file:   # abort only once the node is writing the upload's temp file
                    deadline = time.monotonic() + 10
                    while not files_under(tmp_path / "d1" / "tmp") and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                    if not files_under(tmp_path / "d1" / "tmp"):
                        never_started.append(sent)
                else:
                    await asyncio.sleep(0.05)  # nothing to see: give the node the bytes before the abort
                raise Abort("client gave up")
            chunk = archive[i:i + 65536]
            sent += len(chunk)
            yield chunk

    async def body(node):
        with pytest.raises((Abort, DiskUnavailable, aiohttp.ClientError)):
            await node.disk().put_archive(f"{VID}.0", aborting())
        assert not never_started, "the node never began writing the upload: the abort tested nothing"
        await node.session.close()  # whatever the client kept open is gone now
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not files_under(tmp_path / "d1" / "tmp"):
                break
            await asyncio.sleep(0.02)
        # checked while the node is still running, not after shutdown cleanup
        assert files_under(tmp_path / "d1" / "tmp") == [], "temp file of the aborted upload left behind"
        assert files_under(tmp_path / "d1" / "archives") == []
        assert list(node.stores["d1"].list_archives()) == []
        return True

    assert run(tmp_path, body)


def test_scrub_is_asked_for_and_reported_over_http(tmp_path):
    from storage.node.disk_scrub import DiskScrubber
    from .test_store import flip, stored_at
    good, bad = f"{VID}.0", f"{VID2}.1"

    async def body(node):
        scrubbers = [DiskScrubber(s, rate=0, schedule=False) for s in node.stores.values()]
        for s in scrubbers:
            s.start()
        try:
            d = node.disk()
            await d.put_archive(good, chunked(make_archive(VID, 0)[0]))
            await d.put_archive(bad, chunked(make_archive(VID2, 1)[0]))
            path, offset, length = stored_at(node.stores["d1"], bad)
            flip(path, offset + length // 2, b"rot")
            # nobody without the cluster secret may start or read a pass
            for method in ("GET", "POST"):
                status, _ = await node.raw(method, "/v1/d1/scrub", _bad_auth_cases(method, "/v1/d1/scrub")["wrong-secret"])
                assert status == 403
            assert (await d.scrub_state())["passes_started"] == 0
            status, _ = await node.raw("POST", "/v1/d1/scrub?rate=-1", node.signed("POST", "/v1/d1/scrub?rate=-1"))
            assert status == 400
            number = await d.scrub_request(0)
            deadline = time.monotonic() + 10
            while ((await d.scrub_state())["last_full_pass"] or {}).get("number") != number:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            state = await d.scrub_state()
            assert [row["archive"] for row in state["corrupt"]] == [bad]
            assert state["last_full_pass"]["archives_checked"] == 2
            assert (await node.disk("d2").scrub_state())["last_full_pass"] is None   # asked d1 only
        finally:
            for s in scrubbers:
                await s.stop()
        return True

    assert run(tmp_path, body)


def test_metrics_need_no_secret_and_cover_disks_and_requests(tmp_path):
    async def body(node):
        await node.disk().put_archive(f"{VID}.0", chunked(make_archive(VID, 0)[0]))
        await node.disk().read(f"{VID}.0", 0, 10)
        status, raw = await node.raw("GET", "/metrics")
        assert status == 200
        text = raw.decode()
        for line in ('pocket_node_disk_free_bytes{disk="d1"}', 'pocket_node_packed_archives{disk="d2"} 0.0',
                     'pocket_node_packed_archives{disk="d1"} 1.0',
                     'pocket_node_requests_total{method="PUT",route="/v1/{disk}/fetch",status="200"} 1.0'):
            assert line in text, line
        # only /metrics is open: everything else still wants the secret
        status, _ = await node.raw("GET", "/metrics/../v1/health")
        assert status in (403, 404)
        return True

    assert run(tmp_path, body)


def test_replayed_requests_and_swapped_bodies_are_refused(tmp_path):
    """A request captured on the wire is useless: sent again it is refused (its nonce was
    seen), and its headers with another body are refused (the body tag does not match,
    or for a changed record payload, its checksum: test_archive_tag.py)."""
    archive, _ = make_archive()
    other, _ = make_archive(VID, 0, seed=3)
    forged = bytearray(archive)
    forged[layout.HEADER_SIZE + 2] ^= 0x01      # the first record's length

    async def body(node):
        batch_path = "/v1/d1/batch"
        headers = node.signed("PUT", batch_path)
        sent = auth.tag(SECRET, headers, batch.pack([(batch.RECORD, VID2, b'{"kind":"x"}')]))
        assert (await node.raw("PUT", batch_path, headers, sent))[0] == 200
        assert (await node.raw("PUT", batch_path, headers, sent))[0] == 403      # same bytes again
        again = node.signed("PUT", batch_path)
        assert (await node.raw("PUT", batch_path, again, sent))[0] == 403        # old tag, new headers
        assert [x async for x in node.disk().iter_records()] == [(VID2, b'{"kind":"x"}')]

        path = f"/v1/d1/archives/{VID}.0"
        headers = node.signed("PUT", path)
        tagged = await signed_archive(headers, archive)
        assert (await node.raw("PUT", path, headers, bytes(forged) + tagged[-auth.TAG_SIZE:]))[0] == 403
        assert (await node.raw("PUT", path, headers, archive))[0] == 403         # no tag at all
        assert (await node.raw("PUT", path, headers, auth.tag(SECRET, headers, archive)))[0] == 403  # a record's
        assert await node.disk().stat(f"{VID}.0") is None
        fresh = node.signed("PUT", path)
        assert (await node.raw("PUT", path, fresh, await signed_archive(fresh, archive)))[0] == 201
        assert (await node.raw("PUT", path, fresh, await signed_archive(fresh, other)))[0] == 403
        assert await node.disk().read(f"{VID}.0", 0, 1 << 20) == archive
        get = node.signed("GET", "/v1/health")
        assert (await node.raw("GET", "/v1/health", get))[0] == 200
        assert (await node.raw("GET", "/v1/health", get))[0] == 403

        # a fetch reads archives: captured, it is no more use than a write
        fetch_path, ops = "/v1/d1/fetch", batch.pack([(fetch.READ, f"{VID}.0", fetch.span(0, fetch.WHOLE))])
        headers = node.signed("PUT", fetch_path)
        status, answer = await node.raw("PUT", fetch_path, headers, auth.tag(SECRET, headers, ops))
        assert status == 200 and bytes(fetch.outcomes(answer, 1)[0][1]) == archive
        assert (await node.raw("PUT", fetch_path, headers, auth.tag(SECRET, headers, ops)))[0] == 403   # again
        later = node.signed("PUT", fetch_path)
        assert (await node.raw("PUT", fetch_path, later, auth.tag(SECRET, headers, ops)))[0] == 403     # old tag
        assert (await node.raw("PUT", fetch_path, node.signed("PUT", fetch_path), ops))[0] == 403       # no tag
        return True

    assert run(tmp_path, body)
    assert files_under(tmp_path / "d1" / "tmp") == []


def test_replay_cache_is_bounded_and_never_forgets_into_a_replay():
    cache = auth.ReplayCache(limit=3)
    now = int(time.time() * 1000)
    for i in range(3):
        assert cache.admit(f"n{i}", now + i) is None
    assert cache.admit("n3", now + 3) is None          # n0 dropped: the floor moves past it
    assert cache.admit("n0", now + 0) is not None       # so its replay is still refused
    assert cache.admit("n1", now + 1) is not None
    assert len(cache._seen) <= 3


def test_a_range_streamed_in_parts_is_byte_exact_and_ends_where_the_archive_does(tmp_path):
    """`stream_range` is one response taken in parts of any size: across the node's 1 MiB
    pieces and the socket's chunks the parts join to the archive's bytes, clamped at its
    end like `read`; a stream closed half read leaves the node answering."""
    big, _ = make_archive(size=20_000_123, segment_size=1 << 20, seed=41)    # 5 MiB, a file of its own
    small, _ = make_archive(VID2, size=40_000, segment_size=16384, seed=42)   # packed

    async def body(node):
        d = node.disk()
        await d.put_archive(f"{VID}.0", chunked(big, 1 << 16))
        await d.put_archive(f"{VID2}.0", chunked(small))
        stream = await d.stream_range(f"{VID}.0", 100, 1 << 40)
        parts = []
        for n in (1, 65535, 1 << 20, 3, (1 << 20) + 7, 777_777, 1 << 30):
            parts.append(bytes(await stream.take(n)))
        assert b"".join(parts) == big[100:]
        assert [len(p) for p in parts[:-1]] == [1, 65535, 1 << 20, 3, (1 << 20) + 7, 777_777]
        assert stream.done and stream.position == len(big)
        assert await stream.take(5) == b""
        stream.close()

        packed = await d.stream_range(f"{VID2}.0", 64, 30_000)
        assert bytes(await packed.take(29_999)) + bytes(await packed.take(10)) == small[64:30_064]
        packed.close()

        half = await d.stream_range(f"{VID}.0", 0, len(big))
        assert bytes(await half.take(3 << 20)) == big[:3 << 20]
        half.close()
        assert await d.read(f"{VID}.0", (3 << 20) - 5, 10) == big[(3 << 20) - 5:(3 << 20) + 5]
        with pytest.raises(ArchiveMissing):
            await d.stream_range(f"{VID2}.1", 0, 10)
        return True

    assert run(tmp_path, body)


def test_small_writes_asked_together_share_requests_and_keep_their_own_outcomes(tmp_path):
    """Fifty callers at once on one disk: each small archive and record lands with its
    own bytes, each delete says whether there was an archive, a bad name or a broken
    archive fails only its own call, and the node saw a few batches, not fifty requests."""
    archives = {f"{VID}.{i}": make_archive(VID, i, size=3000 + 999 * i, seed=50 + i)[0] for i in range(5)}
    kept = {f"{VID2}.{i}": make_archive(VID2, i, size=7000 + 1234 * i, seed=60 + i)[0] for i in range(6)}

    async def body(node):
        d = node.disk()
        assert await asyncio.gather(*(d.put_archive(n, chunked(a, 1000)) for n, a in archives.items())) == \
            [len(a) for a in archives.values()]
        broken = kept[f"{VID2}.5"][:-3] + b"xyz"    # its footer's magic
        sizes = await asyncio.gather(*(d.put_archive(n, chunked(a)) for n, a in kept.items() if n[-1] != "5"),
                                     d.put_archive(f"{VID2}.5", chunked(broken)), return_exceptions=True)
        assert sizes[:5] == [len(a) for n, a in kept.items() if n[-1] != "5"]
        assert isinstance(sizes[5], layout.CorruptFragment)
        for name, data in kept.items():
            if name[-1] != "5":
                assert await d.read(name, 0, 1 << 20) == data
        records = {f"{i:032x}": f'{{"kind": "tombstone", "n": {i}, "pad": "{"x" * i}"}}'.encode()
                   for i in range(1, 31)}
        calls = [d.put_record(rec_id, data) for rec_id, data in records.items()]
        calls += [d.delete_archive(name) for name in archives]
        calls += [d.delete_archive(f"{VID2}.{i}") for i in range(7, 11)]
        calls.append(d.put_record("../escape", b"{}"))
        done = await asyncio.gather(*calls, return_exceptions=True)
        assert done[:30] == [None] * 30
        assert done[30:35] == [True] * 5 and done[35:39] == [False] * 4
        assert isinstance(done[39], DiskUnavailable) and "400" in str(done[39])
        assert dict([x async for x in d.iter_records()]) == records
        assert sorted([x[0] async for x in d.iter_archives()]) == [n for n in kept if n[-1] != "5"]
        _, text = await node.raw("GET", "/metrics")
        counts = dict(re.findall(rb'^pocket_node_requests_total\{method="PUT",route="/v1/\{disk\}/(\w+).*,'
                                 rb'status="\d+"\} (\S+)$', text, re.M))
        assert float(counts[b"batch"]) <= 6 and sum(map(float, counts.values())) <= 9, counts
        return True

    assert run(tmp_path, body)


def test_small_reads_and_stats_asked_together_share_requests_and_keep_their_own_outcomes(tmp_path):
    """Thirty-five callers at once on one disk, as a repair of many small archives asks: each
    read (whole, a range, past the end) gets its own archive's bytes, each stat its size
    or None, a missing archive or a bad name fails only its own call, and the node saw a
    few fetches, not forty requests."""
    stored = {f"{VID}.{i}": make_archive(VID, i, size=2500 + 1777 * i, seed=90 + i)[0] for i in range(6)}

    async def body(node):
        d = node.disk()
        await asyncio.gather(*(d.put_archive(n, chunked(a)) for n, a in stored.items()))
        _, before = await node.raw("GET", "/metrics")
        calls = [d.read(n, 0, 1 << 62) for n in stored]
        calls += [d.read(n, 31 + i, 400 + 13 * i) for i, n in enumerate(stored)]
        calls += [d.read(n, len(a) - 5, 1 << 20) for n, a in stored.items()]
        calls += [d.stat(n) for n in stored] + [d.stat(f"{VID2}.{i}") for i in range(4)]
        calls += [d.read(f"{VID2}.1", 0, 1 << 62), d.read("../escape", 0, 10), d.stat("not-a-name")]
        done = await asyncio.gather(*calls, return_exceptions=True)
        assert done[:6] == list(stored.values())
        assert done[6:12] == [a[31 + i:431 + 14 * i] for i, a in enumerate(stored.values())]
        assert done[12:18] == [a[-5:] for a in stored.values()]
        assert done[18:24] == [len(a) for a in stored.values()] and done[24:28] == [None] * 4
        assert isinstance(done[28], ArchiveMissing)
        assert isinstance(done[29], DiskUnavailable) and "400" in str(done[29])
        assert isinstance(done[30], DiskUnavailable) and "400" in str(done[30])
        _, after = await node.raw("GET", "/metrics")
        fetches = [float(m.group(1)) if m else 0.0 for m in
                   (re.search(rb'route="/v1/\{disk\}/fetch",status="200"\} (\S+)$', t, re.M) for t in (before, after))]
        assert 1 <= fetches[1] - fetches[0] <= 4, fetches
        return True

    assert run(tmp_path, body)


@pytest.mark.parametrize("route, kind", [("fetch", batch.ARCHIVE), ("fetch", batch.DELETE), ("batch", fetch.READ)])
def test_a_fetch_cannot_write_and_a_batch_cannot_read(tmp_path, route, kind):
    """Each route takes only its own kinds: a write slipped into a fetch (or a read into a
    batch) refuses the whole body with 400, and nothing on the disk changes."""
    archive, _ = make_archive(VID, 0, size=4000, seed=7)

    async def body(node):
        await node.disk().put_archive(f"{VID}.0", chunked(archive))
        before = files_under(tmp_path)
        path = f"/v1/d1/{route}"
        ops = [(fetch.STAT, f"{VID}.0", b""), (kind, f"{VID}.0", archive if kind == batch.ARCHIVE else b"")]
        headers = node.signed("PUT", path)
        status, _ = await node.raw("PUT", path, headers, auth.tag(SECRET, headers, batch.pack(ops)))
        assert status == 400
        assert files_under(tmp_path) == before
        assert await node.disk().read(f"{VID}.0", 0, 1 << 62) == archive
        return True

    assert run(tmp_path, body)


def test_the_routes_of_older_links_are_gone(tmp_path):
    """Records are written and archives deleted only in batches (node link 4 on): the single
    routes of link 3 are not served, even to a request signed as they were."""
    async def body(node):
        await node.disk().put_archive(f"{VID}.0", chunked(make_archive()[0]))
        before = files_under(tmp_path)
        for method, path, data in [("DELETE", f"/v1/d1/archives/{VID}.0", None),
                                   ("PUT", f"/v1/d1/records/{VID2}", b"{}")]:
            headers = node.signed(method, path)
            data = auth.tag(SECRET, headers, data) if data is not None else None
            status, _ = await node.raw(method, path, headers, data)
            assert status in (404, 405), (method, path, status)
        assert files_under(tmp_path) == before
        return True

    assert run(tmp_path, body)
