"""What `pocket migrate enable|cutover|rollback|detach|status` do, given the cluster as a
one-shot tool sees it (repair/tooling.py): the gateway may be running beside it or not.
"""
from __future__ import annotations

from ..objects.buckets import BucketService
from . import enable as enabling
from . import source as source_client
from . import rebuild_guard, state, transitions
from .credentials import keys_path
from .journal import JournalRunner
from .routes import KeyLocks, Routes
from .services import ToolServices


class _Services(ToolServices):
    """A one-shot command's services, with the buckets and the migration routes."""

    def __init__(self, cfg, tc):
        super().__init__(cfg, tc)
        self.buckets = BucketService(tc.index, self.writer, self.objects, self.multipart)
        self.keys_file = keys_path(cfg.index_path)
        self.routes = Routes(tc.index, self.keys_file)


async def _each(cfg, tc, names: list[str], given: dict, one) -> list[dict]:
    """Run `one(services, pocket_bucket)` for each named bucket; a refusal is reported, not raised."""
    services = _Services(cfg, tc)
    out = []
    try:
        for name in names:
            bucket = given.get("target") or name
            try:
                out.append({"bucket": bucket, "ok": True, **(await one(services, bucket, name))})
            except state.MigrationError as e:
                out.append({"bucket": bucket, "ok": False, "error": str(e)})
    finally:
        await services.close()
    return out


async def enable(cfg, tc, names: list[str], given: dict) -> list[dict]:
    owner = cfg.credentials[0].access_key

    async def one(s, bucket, source_bucket):
        return await enabling.enable(s.index, s.buckets, source_bucket, given, s.keys_file, owner)
    return await _each(cfg, tc, names, given, one)


CUTOVER_ROUNDS = 30   # re-check rounds while writes keep arriving; each round has fewer keys to check


async def cutover(cfg, tc, names: list[str], given: dict) -> list[dict]:
    """Re-check the dirty keys and cut over; keys written during a round are re-checked in the
    next one, so a bucket that keeps being written still cuts over between two writes."""
    async def one(s, bucket, _):
        m = _known(s.index, bucket)
        store, cleared = s.routes.store(m), 0
        for round_no in range(1, CUTOVER_ROUNDS + 1):
            n, different = await transitions.recheck_dirty(s.index, s.writer, store, bucket, s.objects)
            cleared += n
            try:
                m = transitions.cutover(s.index, bucket)
            except transitions.DirtyKeys:
                if round_no == CUTOVER_ROUNDS:
                    raise
                continue
            return {"state": m.state, "dirty_rechecked": cleared, "rounds": round_no}
    return await _each(cfg, tc, names, given, one)


async def rollback(cfg, tc, names: list[str], given: dict) -> list[dict]:
    async def one(s, bucket, _):
        m = _known(s.index, bucket)
        needless = state.rollback_needless(m)
        if needless:
            return {"state": m.state, "changed": False, "note": needless, "journal_drained": None}
        drained = None
        if m.state == state.CUTOVER:   # writes owed to the source first: a rollback must not lose them
            runner = JournalRunner(s.objects, s.multipart, s.writer, s.routes, KeyLocks())
            report = await runner.run_once([bucket], all_due=True)
            drained = {"applied": report.done, "failed": report.failed, "errors": report.errors[:10]}
        m = transitions.rollback(s.index, bucket)
        return {"state": m.state, "changed": True, "journal_drained": drained}
    return await _each(cfg, tc, names, given, one)


async def detach(cfg, tc, names: list[str], given: dict) -> list[dict]:
    async def one(s, bucket, _):
        m, dropped = transitions.detach(s.index, bucket)
        await s.buckets.configure(bucket, {rebuild_guard.FIELD: None})   # a rebuild may go ahead now
        return {"state": m.state, "owed_to_source_dropped": dropped}
    return await _each(cfg, tc, names, given, one)


def status(index, names: list[str]) -> list[dict]:
    records = state.load_all(index)
    wanted = set(names)
    out = []
    with index.read() as ops:
        for m in records:
            if wanted and m.bucket not in wanted and m.source.bucket not in wanted:
                continue
            out.append({**state.as_json(m), "source_label": source_client.describe(m.source),
                        **transitions.progress(ops, m)})
    return out


def _known(index, bucket: str) -> state.Migration:
    m = state.load(index, bucket)
    if m is None:
        raise state.MigrationError(f"bucket {bucket!r} is not being migrated: start with "
                                   f"`pocket migrate enable {bucket}`")
    return m


def render_status(rows: list[dict]) -> str:
    if not rows:
        return "No bucket is being migrated (`pocket migrate plan` and `enable` start one)."
    lines = []
    for r in rows:
        v = r.get("last_verify") or {}
        verify = (f"last verify {'clean' if v.get('clean') else 'NOT clean'}, {v.get('checked', '?')} checked"
                  if v else "never verified")
        eta = f", ETA {r['eta_seconds'] / 60:.0f} min" if r.get("eta_seconds") is not None else ""
        lines.append(f"{r['bucket']}: {r['state']} ({r['authoritative']} authoritative) from {r['source_label']}")
        handed = r.get("counters", {}).get("written_via_gateway")
        via = f", {handed} of them stored by the running gateway" if handed else ""
        lines.append(f"  copied {r['objects_copied']} objects, {r['bytes_copied'] / 2**20:.1f} MiB "
                     f"({r['ranges_done']}/{r['ranges']} ranges) at {r['rate_bytes_per_s'] / 2**20:.1f} MiB/s"
                     f"{eta}{via}")
        lines.append(f"  {verify}; {r['dirty_keys']} keys written since verified; {r['journal']} writes owed "
                     f"to one side")
        lines.append(f"  {r['next']}")
    return "\n".join(lines)
