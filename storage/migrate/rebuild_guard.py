"""Why `pocket index rebuild` refuses while a bucket is being migrated out of S3.

A migration's state lives only in the index (state.py, index/migrations.py): its record
(state, source settings, last verify), the journal of writes still owed to one side, the
dirty keys and the copy ranges. The disks hold bucket records and objects, not these, so a
rebuild would bring the bucket back as a plain Pocket bucket: the gateway would stop dual
writes without a word and every journaled write would be lost.

So `enable` also writes a `migration` field into the bucket's configuration on the disks
(a bucket-config record, like CORS rules), and `detach` removes it. The rebuild refuses
while the disks or the index it would replace show one, unless forced; the message says
what would be lost and how to go on.
"""
from __future__ import annotations

import time

from ..index import migrations
from ..index.backend import MetadataIndexError
from . import state

FIELD = "migration"     # in the bucket record, from `enable` to `detach`


class MigrationInProgress(Exception):
    """The rebuild would drop a migration's state; the message says which and what to do."""


def marker(m: state.Migration) -> dict:
    """What the disks keep of a migration: enough to name it, no secrets."""
    return {"source": m.source.label(), "since": time.time()}


def _from_index(index) -> dict[str, str]:
    found = {}
    try:
        with index.read() as ops:
            for m in state.all_records(ops):
                if m.state in state.ROUTED:
                    found[m.bucket] = (f"{m.state} from {m.source.label()}; {migrations.journal_count(ops, m.bucket)} "
                                       f"writes owed to one side, {migrations.dirty_count(ops, m.bucket)} dirty keys")
    except (MetadataIndexError, KeyError, TypeError):   # an index too damaged to read is why one
        return {}                                          # rebuilds: the disks decide
    return found


def check(index, disk_buckets: dict) -> None:
    """Raise MigrationInProgress if a migration would be dropped (see the module docstring)."""
    found = _from_index(index)
    for name, rec in disk_buckets.items():
        if rec and rec.get(FIELD) and name not in found:
            found[name] = f"from {rec[FIELD].get('source', '?')} (the disks say; the index has no record)"
    if not found:
        return
    listed = "; ".join(f"{name}: {what}" for name, what in sorted(found.items()))
    raise MigrationInProgress(
        f"refusing to rebuild: buckets are being migrated out of S3 ({listed}). A migration's state (its record, "
        f"the writes still owed to the source or to Pocket, the dirty keys, the copy progress) lives only in the "
        f"index, and a rebuild drops it: dual writes would stop silently and the owed writes would be lost. "
        f"See `pocket migrate status`; finish the migration (cutover, detach) or detach it first, or rebuild "
        f"with --force and then run `pocket migrate enable`, copy and verify again for each bucket.")
