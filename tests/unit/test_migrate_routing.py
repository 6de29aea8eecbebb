"""The gateway's migration routing pieces that need no processes: routes following the
state generation, the cutover guard, per-key locks, the journal's backoff, and how a
record's attributes travel to the source."""
from __future__ import annotations

import asyncio
import datetime
import time
from urllib.parse import parse_qsl

import pytest

from storage.index import migrations as M
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.migrate import journal, state as S, transitions
from storage.migrate.routes import KeyLocks, Routes
from storage.migrate.source_store import put_args
from storage.migrate.sync import same_object


@pytest.fixture
def index(tmp_path):
    idx = Index(LmdbBackend(str(tmp_path / "index")))
    yield idx
    idx.close()


def _enable(index, bucket="photos"):
    S.save(index, S.Migration(bucket=bucket, source=S.Source(bucket="src-" + bucket, endpoint="http://127.0.0.1:1")))
    S.transition(index, bucket, S.DUAL_WRITE)


def test_routes_follow_every_transition_made_by_another_handle(index, tmp_path):
    routes = Routes(index)
    assert routes.get("photos") is None
    _enable(index)
    route = routes.get("photos")
    assert route.source_first and route.follower == "pocket" and route.store.bucket == "src-photos"
    for to in (S.BACKFILLED, S.VERIFIED, S.CUTOVER):
        S.transition(index, "photos", to)
    route = routes.get("photos")
    assert not route.source_first and route.follower == "source"
    S.transition(index, "photos", S.DETACHED)
    assert routes.get("photos") is None and routes.migration("photos").state == S.DETACHED


def test_buckets_on_one_source_share_one_client_and_own_keys_get_their_own(index, tmp_path):
    """A client holds a connection pool and a parsed service model: thousands of migrating
    buckets on one endpoint must not make thousands of them. Keys given for one bucket
    must reach that bucket's requests only."""
    from storage.migrate.enable import remembered
    keys_file = str(tmp_path / "keys.json")
    for bucket in ("photos", "videos"):
        _enable(index, bucket)
    # keys given on `enable`'s command line, as production stores them
    S.save(index, remembered(index, "src-keyed", {"target": "keyed", "source_endpoint": "http://127.0.0.1:1",
                                                  "source_access_key": "AKIAKEYED",
                                                  "source_secret_key": "secret-of-keyed"}, keys_file))
    S.transition(index, "keyed", S.DUAL_WRITE)
    routes = Routes(index, keys_file)
    photos, videos, keyed = (routes.get(b).store for b in ("photos", "videos", "keyed"))
    assert (photos.bucket, videos.bucket, keyed.bucket) == ("src-photos", "src-videos", "src-keyed")
    assert photos.client is videos.client
    assert keyed.client is not photos.client
    assert keyed.client._request_signer._credentials.access_key == "AKIAKEYED"
    assert routes.get("photos").store is photos      # kept, not made again per request


def test_keys_given_for_a_bucket_migrated_under_another_name_reach_its_source(index, tmp_path):
    """`--target`: the Pocket bucket is named differently from the source's; the keys given
    on the command line are the source's, and every reader of them (a command's client, the
    gateway's routes) must find them, not fall back to the standard chain."""
    from types import SimpleNamespace

    from storage.migrate import settings
    from storage.migrate.enable import remembered
    cfg = SimpleNamespace(index_path=str(tmp_path / "index" / "data.mdb"))
    given = {"target": "renamed", "source_endpoint": "http://127.0.0.1:1", "source_access_key": "AKIATARGET",
             "source_secret_key": "secret-of-target"}
    src, _, keys_file = settings.resolve(cfg, index, "src-named", "renamed", given)
    assert settings.client_for(src, keys_file).direct.access_key == "AKIATARGET"
    S.save(index, remembered(index, "src-named", given, keys_file))
    S.transition(index, "renamed", S.DUAL_WRITE)
    store = Routes(index, keys_file).get("renamed").store
    assert store.bucket == "src-named"
    assert store.client._request_signer._credentials.access_key == "AKIATARGET"


def test_cutover_guard_wants_a_clean_verify_no_dirty_keys_and_no_backlog(index):
    _enable(index)
    S.transition(index, "photos", S.BACKFILLED)
    S.transition(index, "photos", S.VERIFIED)
    with pytest.raises(S.MigrationError, match="verify"):
        transitions.cutover(index, "photos")
    m = S.load(index, "photos")
    m.last_verify = {"at": time.time(), "clean": True}
    S.save(index, m)
    seq = index.write(lambda ops: M.mark_dirty(ops, "photos", "a key"))
    with pytest.raises(transitions.DirtyKeys):
        transitions.cutover(index, "photos")
    index.write(lambda ops: M.clear_dirty(ops, "photos", "a key", seq))
    index.write(lambda ops: M.journal_add(ops, "photos", {"side": "pocket", "key": "b"}))
    with pytest.raises(S.MigrationError, match="owed to Pocket"):
        transitions.cutover(index, "photos")
    assert S.load(index, "photos").state == S.VERIFIED
    with index.read() as ops:
        seq = M.journal(ops, "photos")[0]["seq"]
    index.write(lambda ops: M.journal_done(ops, "photos", seq))
    assert transitions.cutover(index, "photos").state == S.CUTOVER


def test_rollback_after_cutover_waits_for_writes_owed_to_the_source(index):
    _enable(index)
    for to in (S.BACKFILLED, S.VERIFIED, S.CUTOVER):
        S.transition(index, "photos", to)
    index.write(lambda ops: M.journal_add(ops, "photos", {"side": "source", "key": "k"}))
    with pytest.raises(S.MigrationError, match="not reached the source"):
        transitions.rollback(index, "photos")
    m, dropped = transitions.detach(index, "photos")
    assert m.state == S.DETACHED and dropped == 1
    with index.read() as ops:
        assert M.journal_count(ops, "photos") == 0


def test_key_locks_serialize_one_key_only():
    locks, order = KeyLocks(), []

    async def work(key, tag):
        async with locks.hold("b", key):
            order.append(f"{tag}+")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            order.append(f"{tag}-")

    async def main():
        await asyncio.gather(work("k", 1), work("k", 2), work("other", 3))
    asyncio.run(main())
    assert order.index("1-") < order.index("2+")      # same key: one after the other
    assert order.index("3+") < order.index("1-")      # another key: alongside
    assert locks._locks == {}


def test_backoff_doubles_and_is_capped():
    waits = [journal.backoff(n) for n in range(12)]
    assert waits[0] == journal.BACKOFF_FIRST and waits[1] == 2 * waits[0]
    assert max(waits) == journal.BACKOFF_CAP and waits == sorted(waits)


def test_put_args_carry_headers_metadata_and_tags():
    record = {"key": "k", "content_type": "text/plain", "meta": {"a": "1"},
              "headers": {"Cache-Control": "no-cache", "Content-Disposition": "inline",
                          "Expires": "Wed, 21 Oct 2026 07:28:00 GMT"},
              "tags": {"ü": "x y", "k": "a&b=c"}}
    args = put_args(record)
    assert args["ContentType"] == "text/plain" and args["Metadata"] == {"a": "1"}
    assert args["CacheControl"] == "no-cache" and args["ContentDisposition"] == "inline"
    assert args["Expires"] == datetime.datetime(2026, 10, 21, 7, 28, tzinfo=datetime.timezone.utc)
    assert dict(parse_qsl(args["Tagging"])) == {"ü": "x y", "k": "a&b=c"}


def test_same_object_compares_what_a_client_sees():
    a = {"etag": "e", "size": 3, "content_type": "t", "meta": {"m": "1"}, "headers": {}, "tags": {}}
    assert same_object(a, {**a, "created": 5, "version_id": "other"})
    assert not same_object(a, {**a, "tags": {"x": "y"}})
    assert not same_object(a, {**a, "etag": "f"})
    assert same_object(None, None) and not same_object(a, None)


def test_status_text_names_state_backlog_and_next_step(index):
    _enable(index)
    index.write(lambda ops: M.journal_add(ops, "photos", {"side": "pocket", "key": "b"}))
    from storage.migrate import commands
    rows = commands.status(index, ["photos"])
    assert rows[0]["journal"] == 1 and rows[0]["authoritative"] == "source"
    text = commands.render_status(rows)
    assert "photos: dual-write (source authoritative)" in text and "1 writes owed" in text
    assert "pocket migrate copy" in text
