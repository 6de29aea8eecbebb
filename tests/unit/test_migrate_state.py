"""The migration state machine and its index tables (storage/migrate/state.py, index/migrations.py),
on each index backend."""
from __future__ import annotations

import pytest

from storage.index import migrations as M
from storage.migrate import state as S


@pytest.fixture
def index(make_index):
    return make_index("index")


def _plan(index, bucket="photos"):
    S.save(index, S.Migration(bucket=bucket, source=S.Source(bucket=bucket, endpoint="http://127.0.0.1:1")))


def test_walks_forward_and_rolls_back_to_dual_write(index):
    _plan(index)
    g0 = S.current_generation(index)
    for to in (S.DUAL_WRITE, S.BACKFILLED, S.VERIFIED, S.CUTOVER):
        m = S.transition(index, "photos", to)
        assert m.state == to
    assert S.current_generation(index) == g0 + 4
    assert S.load(index, "photos").authoritative == "pocket"
    m = S.transition(index, "photos", S.DUAL_WRITE, note="rollback")
    assert m.authoritative == "source" and m.routed
    assert [h["state"] for h in m.history] == ["dual-write", "backfilled", "verified", "cutover", "dual-write"]


def test_refuses_edges_the_machine_does_not_have(index):
    _plan(index)
    with pytest.raises(S.MigrationError, match="cannot go to cutover"):
        S.transition(index, "photos", S.CUTOVER)
    with pytest.raises(S.MigrationError, match="not being migrated"):
        S.transition(index, "other", S.DUAL_WRITE)
    assert S.load(index, "photos").state == S.PLANNED


def test_a_guard_refuses_without_changing_anything(index):
    _plan(index)
    g = S.current_generation(index)

    def guard(m):
        raise S.MigrationError("the last verify found 2 mismatches")
    with pytest.raises(S.MigrationError, match="mismatches"):
        S.transition(index, "photos", S.DUAL_WRITE, check=guard)
    assert S.load(index, "photos").state == S.PLANNED and S.current_generation(index) == g


def test_ranges_lease_progress_and_takeover(index):
    index.write(lambda ops: M.set_ranges(ops, "b", [("", "m"), ("m", None)]))
    r = index.write(lambda ops: M.lease_range(ops, "b", "w1", ttl=30, now=100))
    assert r["no"] == 0
    r2 = index.write(lambda ops: M.lease_range(ops, "b", "w2", ttl=30, now=100))
    assert r2["no"] == 1
    assert index.write(lambda ops: M.lease_range(ops, "b", "w3", ttl=30, now=100)) is None
    index.write(lambda ops: M.update_range(ops, "b", 0, "w1", 30, position="f", add={"objects": 3}, now=110))
    # w2 dies: its lease runs out and w3 takes the range over where it stood
    taken = index.write(lambda ops: M.lease_range(ops, "b", "w3", ttl=30, now=200))
    assert taken["no"] == 0 and taken["position"] == "f" and taken["objects"] == 3
    with pytest.raises(M.LeaseLost):
        index.write(lambda ops: M.update_range(ops, "b", 0, "w1", 30, position="g", now=201))
    index.write(lambda ops: M.update_range(ops, "b", 0, "w3", 30, done=True, now=202))
    with index.read() as ops:
        assert [x["done"] for x in M.ranges(ops, "b")] == [True, False]


def test_dirty_keys_clear_only_when_not_written_again(index):
    long_key = "k/" + "é" * 500    # 1,002 bytes: over the index's verbatim key prefix
    s1 = index.write(lambda ops: M.mark_dirty(ops, "b", long_key))
    index.write(lambda ops: M.mark_dirty(ops, "b", "a"))
    s2 = index.write(lambda ops: M.mark_dirty(ops, "b", long_key))
    assert not index.write(lambda ops: M.clear_dirty(ops, "b", long_key, s1))
    assert index.write(lambda ops: M.clear_dirty(ops, "b", long_key, s2))
    with index.read() as ops:
        assert [k for k, _ in M.dirty(ops, "b")] == ["a"]


def test_journal_keeps_order_and_retries(index):
    a = index.write(lambda ops: M.journal_add(ops, "b", {"side": "pocket", "op": "put", "key": "x"}))
    b = index.write(lambda ops: M.journal_add(ops, "b", {"side": "pocket", "op": "delete", "key": "x"}))
    index.write(lambda ops: M.journal_failed(ops, "b", a, "connection refused", next_try=1e18))
    with index.read() as ops:
        assert [e["seq"] for e in M.journal(ops, "b")] == [a, b]
        assert [e["seq"] for e in M.journal(ops, "b", due_by=1000)] == [b]
        assert M.journal(ops, "b")[0]["attempts"] == 1
    index.write(lambda ops: M.journal_done(ops, "b", b))
    index.write(lambda ops: M.drop_bucket(ops, "b"))
    with index.read() as ops:
        assert M.journal_count(ops, "b") == 0


def test_a_copy_nonce_is_taken_once_and_dropped_once_too_old_to_matter(index):
    """The gateway's record of copy requests (gateway_copy.py): a replay is refused; a nonce
    older than the window is pruned by a later admission (its timestamp is refused by then)."""
    now = 1_800_000_000.0
    old, fresh = int((now - 400) * 1000), int(now * 1000)
    assert index.write(lambda ops: M.admit_nonce(ops, old, "a" * 32, 300.0, now=now - 400))
    assert not index.write(lambda ops: M.admit_nonce(ops, old, "a" * 32, 300.0, now=now - 399))
    assert index.write(lambda ops: M.admit_nonce(ops, fresh, "b" * 32, 300.0, now=now))
    assert not index.write(lambda ops: M.admit_nonce(ops, fresh, "b" * 32, 300.0, now=now + 1))
    with index.read() as ops:
        kept = [k for k, _ in ops.txn.range(M.TABLE, b"n", b"o")]
    assert kept == [b"n" + fresh.to_bytes(8, "big") + b"b" * 32]


def test_cutover_refuses_to_follow_a_quick_verify():
    """--quick compares listings only and cannot see tags changed behind the migrator's
    back: cutover needs a clean verify of the default tier or --deep (the record keeps
    the tier). Refused before the index is asked anything."""
    from storage.migrate.transitions import cutover_guard
    m = S.Migration("b", S.Source("b"))
    m.last_verify = {"at": 1.0, "clean": True, "checked": 5, "mismatched": 0, "missing": 0, "tier": "listing"}
    with pytest.raises(S.MigrationError, match="--quick"):
        cutover_guard(None, m)
    m.last_verify = {**m.last_verify, "clean": False, "tier": "attrs"}
    with pytest.raises(S.MigrationError, match="not clean"):
        cutover_guard(None, m)


def test_rollback_before_any_cutover_is_needless_and_says_why():
    """"Rollback from any state before detached": from planned or dual-write the source is
    already authoritative, so `pocket migrate rollback` succeeds changing nothing (commands.py)."""
    m = S.Migration("b", S.Source("b"))
    for st in (S.PLANNED, S.DUAL_WRITE):
        m.state = st
        assert "already authoritative" in S.rollback_needless(m) and st in S.rollback_needless(m)
    for st in (S.BACKFILLED, S.VERIFIED, S.CUTOVER):
        m.state = st
        assert S.rollback_needless(m) is None
        assert (st, S.DUAL_WRITE) in S.EDGES
