"""The node link's archive tag (storage/node/archive_tag.py): it covers header, record
heads and trailer, the record checksums cover the payloads, and the node checks both
before it commits anything."""
from __future__ import annotations

import asyncio
import random

import pytest

from storage import layout
from storage.layout import Geometry
from storage.node import archive_tag, auth

from .test_node_api import SECRET, Node
from .test_store import VID, files_under, make_archive

PATH = f"/v1/d1/archives/{VID}.0"


async def _stream(pieces):
    for p in pieces:
        yield p
        await asyncio.sleep(0)


def _pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` cut into pieces of the given sizes, cycling (the last one takes the rest)."""
    out, at, n = [], 0, 0
    while at < len(data):
        out.append(data[at:at + sizes[n % len(sizes)]])
        at += len(out[-1])
        n += 1
    return out


async def _signed(headers: dict, archive: bytes, sizes=(1000,)) -> bytes:
    """The archive and its tag, as RemoteDisk sends them."""
    sent = archive_tag.signed_archive(SECRET, headers, _stream(_pieces(archive, list(sizes))))
    return b"".join([bytes(c) async for c in sent])


async def _received(headers: dict, sent: bytes, sizes: list[int]) -> bytes:
    got = archive_tag.verified_archive(SECRET, headers, _stream(_pieces(sent, sizes)))
    return b"".join([bytes(c) async for c in got])


def _places(archive: bytes, manifest: dict, k: int) -> dict[str, tuple[int, type]]:
    """Offsets to change in a signed archive, and what the node must raise for each."""
    geo = Geometry(manifest["size"], manifest.get("segment_size", 4096), k)
    last, mid = geo.segments - 1, geo.segments // 2
    trailer_at = geo.records_end()
    return {
        "header": (10, auth.BadBody),
        "head length": (geo.record_offset(1), auth.BadBody),
        "head checksum": (geo.record_offset(last) + 6, auth.BadBody),
        "first payload byte": (geo.record_offset(0) + layout.RECORD_OVERHEAD, layout.CorruptFragment),
        "payload mid-archive": (geo.record_offset(mid) + layout.RECORD_OVERHEAD + geo.block_size // 2,
                                layout.CorruptFragment),
        "last payload byte": (geo.record_offset(last) + geo.record_length(last) - 1, layout.CorruptFragment),
        "trailer": (trailer_at + 3, auth.BadBody),
        "footer": (len(archive) - 2, auth.BadBody),
        "tag": (len(archive) + 5, auth.BadBody),
    }


# 3000-byte check batches, so that records (1036 bytes) straddle batches and chunks
@pytest.mark.parametrize("sizes", [[1], [auth.TAG_SIZE - 1], [auth.TAG_SIZE], [auth.TAG_SIZE + 1, 5],
                                   [layout.RECORD_OVERHEAD, 7], [3000], [3003, 11], [9000]])
def test_any_cut_of_the_stream_passes_whole_and_every_change_is_caught(monkeypatch, sizes):
    """However the archive is cut on the way, it arrives byte for byte; one byte changed
    in the skeleton (header, a head, trailer, footer, tag) fails the tag, one changed in
    a payload fails that record's checksum, and a stream cut short is refused."""
    monkeypatch.setattr(archive_tag._Checks, "BATCH_BYTES", 3000)
    monkeypatch.setattr(archive_tag._Checks, "INLINE_BYTES", 0)
    archive, manifest = make_archive(size=40_000, segment_size=4096, seed=len(sizes) + 7)
    manifest["segment_size"] = 4096
    headers = auth.sign(SECRET, "PUT", PATH, "node1")

    async def main():
        sent = await _signed(headers, archive)
        assert len(sent) == len(archive) + auth.TAG_SIZE and sent.startswith(archive)
        assert await _received(headers, sent, sizes) == archive
        for at, error in _places(archive, manifest, 4).values():
            forged = bytearray(sent)
            forged[at] ^= 0x01
            with pytest.raises(error):
                await _received(headers, bytes(forged), sizes)
        with pytest.raises(auth.BadBody):
            await _received(headers, sent[:-1], sizes)
        with pytest.raises(auth.BadBody):                          # another request's tag
            await _received(auth.sign(SECRET, "PUT", PATH, "node1"), sent, sizes)
        cut = archive[:layout.HEADER_SIZE + layout.RECORD_OVERHEAD + 500]   # signed as cut: inside a record
        with pytest.raises(layout.CorruptFragment, match="ends inside the record of segment 0"):
            await _received(headers, await _signed(headers, cut), sizes)
    asyncio.run(main())


def test_a_payload_swapped_with_its_head_for_another_record_fails_the_tag():
    """Records moved within an archive keep valid checksums; the tag still refuses them."""
    archive, _ = make_archive(size=20_000, segment_size=4096, seed=41)
    geo = Geometry(20_000, 4096, 4)
    first, second = geo.span(0, 0), geo.span(1, 1)
    a = archive[first[0]:first[0] + first[1]]
    b = archive[second[0]:second[0] + second[1]]
    assert a != b and len(a) == len(b)
    swapped = archive[:first[0]] + b + a + archive[second[0] + second[1]:]
    headers = auth.sign(SECRET, "PUT", PATH, "node1")

    async def main():
        sent = await _signed(headers, archive)
        with pytest.raises(auth.BadBody):
            await _received(headers, swapped + sent[-auth.TAG_SIZE:], [4096])
    asyncio.run(main())


@pytest.mark.parametrize("size", [12_000, 700_000])
def test_node_takes_an_archive_of_the_previous_keyed_format_and_checks_it(tmp_path, size):
    """A disk move copies archives as an earlier release wrote them (format 2, HMAC): the
    node checks their records with their own format's MAC, stores them byte for byte, and
    still refuses one whose payload changed. A format-1 (unkeyed) archive is refused."""
    segment = 2048 if size < 100_000 else 65536
    old, manifest = make_archive(size=size, segment_size=segment, seed=size + 1, fmt=2)
    assert layout.ArchiveHeader.unpack(old[:layout.HEADER_SIZE], layout.STRICT).fmt == 2
    manifest["segment_size"] = segment
    unkeyed, _ = make_archive(size=size, segment_size=segment, seed=size + 1, fmt=layout.LEGACY_FORMAT)

    async def main():
        async with Node(tmp_path) as node:
            at, _error = _places(old, manifest, 4)["payload mid-archive"]
            headers = node.signed("PUT", PATH)
            forged = bytearray(await _signed(headers, old, [65536]))
            forged[at] ^= 0x40
            assert (await node.raw("PUT", PATH, headers, bytes(forged)))[0] == 422
            headers = node.signed("PUT", PATH)
            assert (await node.raw("PUT", PATH, headers, await _signed(headers, unkeyed, [65536])))[0] == 422
            assert await node.disk().stat(f"{VID}.0") is None
            headers = node.signed("PUT", PATH)
            assert (await node.raw("PUT", PATH, headers, await _signed(headers, old, [65536])))[0] == 201
            assert await node.disk().read(f"{VID}.0", 0, 1 << 30) == old
    asyncio.run(main())


# 12 kB goes to a pack, 700 kB to a file of its own (pack threshold 256 KiB)
@pytest.mark.parametrize("size", [12_000, 700_000])
def test_node_refuses_an_archive_changed_on_the_way_and_keeps_nothing(tmp_path, size):
    """Over HTTP, as a man in the middle would: a payload byte changed gets 422 (its record
    checksum), a head or trailer byte 403 (the tag); the disk keeps no archive, packed or
    file, and no temp file. The same archive sent honestly is then stored byte for byte."""
    segment = 2048 if size < 100_000 else 65536
    archive, manifest = make_archive(size=size, segment_size=segment, seed=size)
    manifest["segment_size"] = segment

    async def body(node):
        places = _places(archive, manifest, 4)
        for what in ("first payload byte", "payload mid-archive", "last payload byte", "head checksum",
                     "head length", "trailer"):
            at, error = places[what]
            headers = node.signed("PUT", PATH)
            forged = bytearray(await _signed(headers, archive, [65536]))
            forged[at] ^= 0x40
            status, answer = await node.raw("PUT", PATH, headers, bytes(forged))
            assert status == (422 if error is layout.CorruptFragment else 403), (what, answer)
            assert await node.disk().stat(f"{VID}.0") is None, what
            assert list(node.stores["d1"].list_archives()) == [], what
            assert files_under(tmp_path / "d1" / "tmp") == [], what
        headers = node.signed("PUT", PATH)
        assert (await node.raw("PUT", PATH, headers, await _signed(headers, archive, [65536])))[0] == 201
        assert await node.disk().read(f"{VID}.0", 0, 1 << 30) == archive
        return True

    async def main():
        async with Node(tmp_path) as node:
            return await body(node)
    assert asyncio.run(main())


def test_a_peer_of_another_link_version_is_refused_with_a_message_saying_so(tmp_path):
    """An older gateway sends no link version (and MACs with the older key): the node
    refuses it, says why, and the refusal names the node's version for the client."""
    archive, _ = make_archive(size=3000, seed=5)

    async def main():
        async with Node(tmp_path) as node:
            for link in (None, "2", "3", "4", "5", "6", "8"):
                headers = node.signed("PUT", PATH)
                if link is None:
                    del headers[auth.LINK_HEADER]
                else:
                    headers[auth.LINK_HEADER] = link
                async with node.session.put(node.url + PATH, headers=headers,
                                            data=await _signed(headers, archive)) as r:
                    assert r.status == 403
                    assert r.headers[auth.LINK_HEADER] == auth.LINK_VERSION
                    assert "node link" in (await r.json())["error"]
            assert await node.disk().stat(f"{VID}.0") is None
            assert await node.disk().put_archive(f"{VID}.0", _stream([archive])) == len(archive)
    asyncio.run(main())


def test_payloads_are_checked_even_when_the_sender_damaged_them(tmp_path):
    """A disk move copies archives as they are on the old disk, tag computed over what it
    sends: a rotten record there is refused as corrupt (the mover then rebuilds), never stored."""
    archive, _ = make_archive(size=300_000, segment_size=65536, seed=9)
    rotten = bytearray(archive)
    rotten[layout.HEADER_SIZE + layout.RECORD_OVERHEAD + random.Random(9).randrange(16384)] ^= 0x08

    async def main():
        async with Node(tmp_path) as node:
            with pytest.raises(layout.CorruptFragment, match="segment 0: record checksum mismatch"):
                await node.disk().put_archive(f"{VID}.0", _stream(_pieces(bytes(rotten), [50_000])))
            assert await node.disk().stat(f"{VID}.0") is None
    asyncio.run(main())
    assert files_under(tmp_path / "d1" / "archives") == [] and files_under(tmp_path / "d1" / "tmp") == []
