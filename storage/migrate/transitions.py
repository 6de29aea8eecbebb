"""The state-changing commands: `pocket migrate cutover`, `rollback`, `detach`.

Each guard is checked again inside the index transaction that moves the state, so a write
the gateway marks dirty (or journals) meanwhile is seen. The running gateway follows the
new state on its next request (state.py's generation).
"""
from __future__ import annotations


from ..index import migrations
from . import state, tally
from .sync import same_object


class DirtyKeys(state.MigrationError):
    """Keys were written since they were last checked equal (cutover re-checks and tries again)."""


async def recheck_dirty(index, writer, store, bucket: str, pocket_objects) -> tuple[int, list[str]]:
    """Compare each dirty key on both sides (ETag, size, headers, metadata, tags) and clear
    the equal ones; returns (cleared, keys still different). The friendly part of cutover:
    keys written since the last verify need not wait for a whole new verify pass."""
    with index.read() as ops:
        dirty = migrations.dirty(ops, bucket)
    cleared, different = 0, []
    for key, seq in dirty:
        there = await store.head(bucket, key)
        here = index.get_object(bucket, key)
        if same_object(here, there):
            if await writer.submit(lambda ops, k=key, s=seq: migrations.clear_dirty(ops, bucket, k, s)):
                cleared += 1
        else:
            different.append(key)
    return cleared, different


def cutover_guard(ops, m: state.Migration) -> None:
    verify = m.last_verify or {}
    if not verify.get("clean"):
        raise state.MigrationError(f"{m.bucket}: the last verify was not clean (or there was none); run "
                                   f"`pocket migrate verify --fix {m.source.bucket}` first")
    if verify.get("tier") == "listing":
        raise state.MigrationError(f"{m.bucket}: the last verify was --quick, which compares listings only and "
                                   "cannot see tags changed behind the migrator's back; run `pocket migrate "
                                   f"verify {m.source.bucket}` (or --deep) first")
    dirty = migrations.dirty_count(ops, m.bucket)
    if dirty:
        raise DirtyKeys(f"{m.bucket}: {dirty} keys were written since they were last verified and "
                                   f"differ (or could not be compared); run `pocket migrate verify --fix "
                                   f"{m.source.bucket}`, then cutover again")
    owed = migrations.journal_count(ops, m.bucket)
    if owed:
        raise state.MigrationError(f"{m.bucket}: {owed} writes are still owed to Pocket (journal backlog); "
                                   f"the gateway retries them — cutover again once `pocket migrate status` "
                                   f"shows none")


def cutover(index, bucket: str) -> state.Migration:
    return index.write(lambda ops: state.move(ops, bucket, state.CUTOVER, "cutover",
                                              check=lambda m: cutover_guard(ops, m)))


def rollback(index, bucket: str) -> state.Migration:
    """Back to S3-authoritative (dual-write). Refused while writes are owed to the source:
    they are the writes made after cutover that a rollback must not lose."""
    def guard(ops, m):
        owed = migrations.journal_count(ops, m.bucket)
        if owed and m.state == state.CUTOVER:
            raise state.MigrationError(f"{m.bucket}: {owed} writes made since cutover have not reached the source "
                                       f"yet (it was unreachable); rollback once they have (`pocket migrate "
                                       f"status` shows the backlog), or it would lose them")
    return index.write(lambda ops: state.move(ops, bucket, state.DUAL_WRITE, "rollback",
                                              check=lambda m: guard(ops, m)))


def detach(index, bucket: str) -> tuple[state.Migration, int]:
    """Stop mirroring; the source is left as it is. Returns the record and the writes that
    were still owed to the source (dropped: that is what detaching means)."""
    def work(ops):
        owed = migrations.journal_count(ops, bucket)
        m = state.move(ops, bucket, state.DETACHED, "detach")
        migrations.drop_bucket(ops, bucket)
        return m, owed
    return index.write(work)


def copy_rate(m: state.Migration, ranges: list[dict]) -> float:
    """Bytes per second of the latest copy pass, from its start to its latest checkpoint:
    the time between passes (or since `enable`) is no part of it, so the ETA of a bucket
    whose copy paused for a day is still what the copy will take."""
    copy_pass = m.counters.get("copy_pass")
    if not copy_pass:
        return 0.0
    moved = sum(r.get("bytes", 0) for r in ranges) - copy_pass["bytes_before"]
    latest = max((r.get("updated", 0.0) for r in ranges), default=0.0)
    return moved / (latest - copy_pass["started"]) if moved > 0 and latest > copy_pass["started"] else 0.0


def progress(ops, m: state.Migration) -> dict:
    """Counts for `status`: copied objects/bytes (from the backfill ranges), rate, ETA,
    dirty keys and journal backlog. The totals come from the plan's inventory when it
    recorded them (`counters["source_objects"]`, `counters["source_bytes"]`)."""
    ranges = migrations.ranges(ops, m.bucket)
    copied = sum(r.get("bytes", 0) for r in ranges)
    objects = sum(r.get("objects", 0) for r in ranges)
    rate = copy_rate(m, ranges)
    total = m.counters.get("source_bytes")
    eta = tally.eta(total, copied, rate)
    return {"ranges": len(ranges), "ranges_done": sum(1 for r in ranges if r.get("done")),
            "objects_copied": objects, "bytes_copied": copied, "source_objects": m.counters.get("source_objects"),
            "source_bytes": total, "rate_bytes_per_s": rate, "eta_seconds": eta,
            "dirty_keys": migrations.dirty_count(ops, m.bucket), "journal": migrations.journal_count(ops, m.bucket)}
