"""The volume index (index/volume_index.py) on each backend: after any mix of writes it
lists exactly the archive sets a scan of the whole index finds on each volume."""
from __future__ import annotations

import asyncio
import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.durability.sets import live_sets, sets_in_volumes
from storage.index import volume_index
from storage.index.batcher import IndexWriter
from storage.index.copy import copy_index
from storage.index.uploads import UploadTxn
from storage.index.versions import VersionTxn
from storage.objects.commits import amend, install, remove_version
from storage.objects.ids import new_id

VOLUMES = ["vol-a", "vol-b", "vol-c"]


def by_scan(ix) -> dict[str, set[str]]:
    """volume -> version ids of the sets on it, from the whole-index scan scrub uses."""
    out: dict[str, set[str]] = {v: set() for v in VOLUMES}
    for s in live_sets(ix):
        out.setdefault(s["volume"], set()).add(s["version_id"])
    return out


def entries_exact(ix) -> bool:
    """The table holds one entry per (volume, stored record with a set on it): none missing, none stale."""
    with ix.read() as ops:
        want = {volume_index.entry_key(v, table, k)
                for table in volume_index.TAGS for k, raw in ops.txn.range(table)
                for v in volume_index.record_volumes(raw)}
        have = {k for k, _ in ops.txn.range(volume_index.TABLE) if k != volume_index.FILLED}
    return want == have


def by_index(ix) -> dict[str, set[str]]:
    assert entries_exact(ix)
    out = {}
    for v in VOLUMES:
        found = [s["version_id"] for s in volume_index.volume_sets(ix, v, batch=3)]   # several pages
        assert len(found) == len(set(found)), f"{v}: a set listed twice"
        out[v] = set(found)
    return out


def record(bucket, key, volume, versioned=True, marker=False):
    vid = new_id()
    r = {"bucket": bucket, "key": key, "version_id": vid, "created": 0.0, "etag": vid[:8], "size": 1,
         "volume": volume, "disks": [], "k": 1, "m": 0, "segment_size": 1 << 20}
    if versioned:
        r["versioned"] = True
    if marker:
        r = {k: v for k, v in r.items() if k not in ("volume", "disks")} | {"delete_marker": True}
    return r


def multipart(bucket, key, volumes):
    r = record(bucket, key, volumes[0])
    del r["volume"]
    r["parts"] = [{"number": i + 1, "size": 1, "etag": "e", "version_id": new_id(), "volume": v, "disks": [],
                   "k": 1, "m": 0, "segment_size": 1 << 20, "policy": "replica:1", "checksums": {}}
                  for i, v in enumerate(volumes)]
    return r


# The operations a gateway makes, each one index transaction: (name, arguments).
op = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 5), st.sampled_from(VOLUMES), st.booleans()),
    st.tuples(st.just("multipart"), st.integers(0, 5), st.lists(st.sampled_from(VOLUMES), min_size=1, max_size=3)),
    st.tuples(st.just("marker"), st.integers(0, 5)),
    st.tuples(st.just("delete_version"), st.integers(0, 5), st.integers(0, 7)),
    st.tuples(st.just("move"), st.integers(0, 5), st.sampled_from(VOLUMES)),
    st.tuples(st.just("versioning"), st.sampled_from(["Enabled", "Suspended"])),
    st.tuples(st.just("part"), st.integers(0, 2), st.integers(1, 3), st.sampled_from(VOLUMES)),
    st.tuples(st.just("abort"), st.integers(0, 2)),
)


def apply(ix, bucket: str, uploads: dict, step: tuple) -> None:
    name, *args = step
    versioned = ix.get_bucket(bucket).get("versioning") == "Enabled"
    if name == "put":
        key, volume, _ = args
        r = record(bucket, f"k{key}", volume, versioned)
        ix.write(lambda ops: install(ops, bucket, r["key"], r))
    elif name == "multipart":
        key, volumes = args
        r = multipart(bucket, f"k{key}", volumes)
        r["versioned"] = versioned
        ix.write(lambda ops: install(ops, bucket, r["key"], r))
    elif name == "marker":
        r = record(bucket, f"k{args[0]}", None, versioned, marker=True)
        ix.write(lambda ops: install(ops, bucket, r["key"], r))
    elif name == "delete_version":
        key, nth = args
        history = ix.key_history(bucket, f"k{key}") or [r for r in [ix.get_object(bucket, f"k{key}")] if r]
        if history:
            vid = history[nth % len(history)]["version_id"]
            ix.write(lambda ops: remove_version(ops, bucket, f"k{key}", vid))
    elif name == "move":   # repair rebuilt the current version onto another volume
        key, volume = args
        current = ix.get_object(bucket, f"k{key}")
        if current is not None and "volume" in current:
            ix.write(lambda ops: amend(ops, bucket, f"k{key}", current["version_id"], {"volume": volume}))
    elif name == "versioning":
        ix.write(lambda ops: ops.put_bucket(bucket, {**ops.get_bucket(bucket), "versioning": args[0]}))
    elif name == "part":
        slot, number, volume = args
        if slot not in uploads:
            uploads[slot] = {"upload_id": new_id(), "bucket": bucket, "key": f"u{slot}", "initiated": 0,
                             "attrs": {}}
            ix.write(lambda ops: UploadTxn(ops).create_upload(bucket, f"u{slot}", uploads[slot]))
        part = {**record(bucket, f"u{slot}", volume), "part_number": number, "upload_id": uploads[slot]["upload_id"]}
        ix.write(lambda ops: UploadTxn(ops).put_part(bucket, f"u{slot}", uploads[slot]["upload_id"], number, part))
    elif name == "abort" and args[0] in uploads:
        u = uploads.pop(args[0])
        ix.write(lambda ops: UploadTxn(ops).delete_upload(bucket, u["key"], u["upload_id"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(op, max_size=25))
def test_index_lists_what_a_full_scan_finds(make_index, steps):
    ix = make_index(f"p{uuid.uuid4().hex}")
    ix.create_bucket("b", {"owner": "me"})
    uploads: dict = {}
    for step in steps:
        apply(ix, "b", uploads, step)
        assert by_index(ix) == by_scan(ix), step


def test_batched_writes_and_rolled_back_savepoints_keep_it_exact(make_index):
    """The gateway's group commit: one transaction, a savepoint per caller; a caller that
    fails after writing must leave no entry behind."""
    ix = make_index()
    ix.create_bucket("b", {"owner": "me"})
    good = [record("b", f"g{i}", VOLUMES[i % 3]) for i in range(20)]

    def failing(ops):
        r = record("b", "bad", "vol-c")
        install(ops, "b", "bad", r)
        raise ValueError("a precondition failed after the write")

    async def run():
        writer = IndexWriter(ix)
        try:
            calls = [writer.submit(lambda ops, r=r: install(ops, "b", r["key"], r)) for r in good]
            calls.insert(7, writer.submit(failing))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await writer.aclose()
    outcomes = asyncio.run(run())
    assert sum(isinstance(o, ValueError) for o in outcomes) == 1
    assert ix.get_object("b", "bad") is None
    assert by_index(ix) == by_scan(ix)
    assert by_index(ix)["vol-c"] == {r["version_id"] for r in good if r["volume"] == "vol-c"}


def test_fill_indexes_an_index_written_before_it(make_index):
    """An index from before the volume index (its rows written without entries) is filled
    by the one-time pass, after which readers use it instead of the full scan."""
    ix = make_index()
    ix.create_bucket("b", {"owner": "me"})
    rng = random.Random(11)
    for i in range(120):
        r = record("b", f"old/{i:04d}", rng.choice(VOLUMES))
        ix.write(lambda ops, r=r: install(ops, "b", r["key"], r))
    ix.backend.write(lambda t: t.clear(volume_index.TABLE))
    assert not any(list(volume_index.volume_sets(ix, v)) for v in VOLUMES)   # what an old index looks like

    async def via_sets():
        return {s["version_id"] async for s in sets_in_volumes(ix, {"vol-b"})}
    assert asyncio.run(via_sets()) == by_scan(ix)["vol-b"]        # not filled: the full scan answers
    assert volume_index.fill(ix, batch=7) == 120
    assert volume_index.is_filled(ix)
    assert by_index(ix) == by_scan(ix)
    assert asyncio.run(via_sets()) == by_scan(ix)["vol-b"]
    assert volume_index.fill(ix) == 0                              # once only


def test_copy_remakes_the_volume_index_in_the_destination(make_index, tmp_path):
    """`pocket index copy` from an index whose volume index was never filled: the copy's is complete."""
    from storage.index.index import open_url
    src = open_url(f"lmdb:{tmp_path / 'src'}")
    try:
        src.create_bucket("b", {"owner": "me"})
        for i in range(40):
            r = multipart("b", f"m{i}", [VOLUMES[i % 3], VOLUMES[(i + 1) % 3]]) if i % 4 == 0 \
                else record("b", f"k{i}", VOLUMES[i % 3])
            src.write(lambda ops, r=r: install(ops, "b", r["key"], r))
        src.backend.write(lambda t: t.clear(volume_index.TABLE))
        dst = make_index("dst")
        copy_index(src, dst, batch=9)
        assert volume_index.is_filled(dst)
        assert by_index(dst) == by_scan(dst) == by_scan(src)
        assert sum(map(len, by_index(dst).values())) == 30 + 10 * 2
    finally:
        src.close()


def test_rebuild_style_clear_leaves_no_entry(make_index):
    ix = make_index()
    ix.create_bucket("b", {"owner": "me"})
    for i in range(10):
        r = record("b", f"k{i}", VOLUMES[i % 3])
        ix.write(lambda ops, r=r: (install(ops, "b", r["key"], r), VersionTxn(ops).put("b", r["key"], r)))
    ix.write(lambda ops: ops.txn.clear("versions"))
    assert by_index(ix) == by_scan(ix) and sum(map(len, by_index(ix).values())) == 10
    ix.write(lambda ops: ops.txn.clear("objects"))
    assert all(not found for found in by_index(ix).values())
    with ix.read() as ops:
        assert [k for k, _ in ops.txn.range(volume_index.TABLE) if k != volume_index.FILLED] == []


def test_a_gateway_opening_an_lmdb_index_from_before_fills_it(tmp_path):
    """An LMDB folder written by a Pocket without the volume index (no `byvolume` database
    at all) is filled once when the gateway opens it (open_index)."""
    from types import SimpleNamespace

    import lmdb

    from storage.index.index import Index, open_index
    from storage.index.lmdb_backend import LmdbBackend
    path = str(tmp_path / "gateway.index")
    old = Index(LmdbBackend(path))
    old.create_bucket("b", {"owner": "me"})
    for i in range(50):
        r = record("b", f"k{i}", VOLUMES[i % 3])
        old.write(lambda ops, r=r: install(ops, "b", r["key"], r))
    old.close()
    env = lmdb.open(path, max_dbs=16)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(volume_index.TABLE.encode(), txn=txn), delete=True)
    env.close()
    cfg = SimpleNamespace(index=SimpleNamespace(backend="lmdb"), index_path=path,
                          gateway=SimpleNamespace(index_max_size=1 << 34))
    ix = open_index(cfg)
    try:
        assert volume_index.is_filled(ix)
        assert by_index(ix) == by_scan(ix) and sum(map(len, by_index(ix).values())) == 50
    finally:
        ix.close()
