"""What one index commit of a write or delete does to a key, versioned or not.

Each function runs inside one index transaction (`IndexWriter.submit(fn)`) and returns
the records whose archives are no longer referenced, for the caller to remove after the
commit. Never-versioned buckets keep their single-lookup rules (newest version wins, a
delete forgets the key); buckets with versioning Enabled or Suspended keep every
version and delete marker in the `versions` DB (index/versions.py) and let `objects`
show the newest one that is not a delete marker.

The bucket's versioning state is read inside the same transaction, so a write racing a
PutBucketVersioning lands on one side of it. Whether a new record is a real version or
the "null" one was fixed when it was written to the disks (`"versioned": true` in its
manifest), so the index always agrees with what `pocket index rebuild` will find.
"""
from __future__ import annotations

from ..index.ops import NoSuchBucket
from ..index.versions import NULL, VersionTxn, is_marker
from . import locks
from .contracts import VersionRecord


class Superseded(Exception):
    """The version a change was judged on is no longer the key's current one."""


def current_is(version_id: str):
    """A commit condition: the key's current version is still `version_id` (internal id).

    What lifecycle expiration installs its delete marker under, so a PUT committed after
    the pass judged the old version expired (by another process too) is never hidden."""
    def check(current: dict | None) -> None:
        if current is None or current["version_id"] != version_id:
            raise Superseded(version_id)
    return check


def put_if_newer(ops, bucket: str, key: str, record: VersionRecord, condition=None) -> VersionRecord | None:
    """Install `record` unless a newer version already won; returns what it displaced.

    Two racing PUTs of one key resolve to the newer version id, the same rule the
    index rebuild applies, so the index and the disks always agree on the winner.
    A conditional write's `condition` sees the current record in the same transaction.
    A new key is created without reading its absence first (IndexTxn.create_object says
    why); a condition that refuses an absent key undoes the insert by raising."""
    if ops.create_object(bucket, key, record):
        if condition is not None:
            condition(None)
        return None
    current = ops.get_object(bucket, key)
    if condition is not None:
        condition(current)
    if current is not None and current["version_id"] > record["version_id"]:
        return record
    ops.put_object(bucket, key, record)
    return current


def install(ops, bucket: str, key: str, record: VersionRecord, condition=None) -> list[VersionRecord]:
    """Make `record` (a new version or delete marker) the key's latest; returns what goes.

    Never-versioned bucket: `put_if_newer`. Versioned bucket: the record joins the key's
    history; a null record (written while Suspended) replaces the null version, as S3
    does, unless a newer null version already won the race."""
    state = versioning(ops, bucket)
    if state is None:
        displaced = put_if_newer(ops, bucket, key, record, condition)
        return [displaced] if displaced is not None else []
    if condition is not None:
        condition(ops.get_object(bucket, key))
    v = VersionTxn(ops)
    v.ensure_history(bucket, key)
    source_id = record.get("s3_version_id")
    if source_id and record.get("versioned"):
        twin = v.get(bucket, key, source_id)
        if twin is not None and twin["version_id"] != record["version_id"]:
            # the same version of a migration's source, installed meanwhile by another
            # writer (a backfill beside a dual write of the key): one copy of it is kept
            return [record]
    displaced = []
    # a version Object Lock protects is never replaced by one with its id (the migrator
    # installs versions under the source's ids) nor by a newer null version
    locks.check_deletable(v.get(bucket, key, record["version_id"]))
    if not record.get("versioned"):
        old = v.get(bucket, key, NULL)
        if old is not None:
            if old["version_id"] > record["version_id"]:
                return [record]
            locks.check_deletable(old)
            v.delete(bucket, key, old["version_id"])
            displaced.append(old)
    v.put(bucket, key, record)
    v.refresh_current(bucket, key)
    return displaced


def remove_version(ops, bucket: str, key: str, version_id: str) -> VersionRecord | None:
    """Forget one version (internal id) for good; the next older one becomes current.

    A key without history has one version, its `objects` record. Returns the removed
    record, None if it is not there (already removed)."""
    v = VersionTxn(ops)
    if not v.has_history(bucket, key):
        return delete_if_current(ops, bucket, key, version_id)
    found = v.get(bucket, key, version_id)
    if found is None:
        return None
    v.delete(bucket, key, version_id)
    v.refresh_current(bucket, key)
    return found


def delete_if_current(ops, bucket: str, key: str, version_id: str) -> VersionRecord | None:
    current = ops.get_object(bucket, key)
    if current is None or current["version_id"] != version_id:
        return None
    return ops.delete_object(bucket, key)


# what a delete marker takes after it was made: the id and time its migration source gave
# the same delete (storage/migrate/routing.py); tags, ACLs and locks are not a marker's
MARKER_FACTS = frozenset({"s3_version_id", "created"})


def amend(ops, bucket: str, key: str, version_id: str, changes: dict, check=None,
          seen: dict | None = None) -> VersionRecord | None:
    """Merge `changes` (tags, ACL, lock) into one version (internal id), row and current record alike.

    `check(version)`, when given, may refuse the change by raising; then `seen["row"]`
    is the version as the index keeps it."""
    v = VersionTxn(ops)
    updated = None
    row = v.get(bucket, key, version_id)
    if check is not None:
        found = row if row is not None else current_version(ops, bucket, key, version_id)
        if found is not None:
            try:
                check(found)
            except Exception:
                if seen is not None:
                    seen["row"] = found
                raise
    if row is not None and (not is_marker(row) or MARKER_FACTS.issuperset(changes)):
        updated = {**row, **changes}
        v.put(bucket, key, updated)
    current = ops.get_object(bucket, key)
    if current is not None and current["version_id"] == version_id:
        updated = {**current, **changes}
        ops.put_object(bucket, key, updated)
    return updated


def current_version(ops, bucket: str, key: str, version_id: str) -> VersionRecord | None:
    """The key's current record if it is version `version_id` (internal id)."""
    current = ops.get_object(bucket, key)
    return current if current is not None and current["version_id"] == version_id else None


def version_row(ops, bucket: str, key: str, version_id: str) -> VersionRecord | None:
    """Version `version_id` (internal id) of a key, with or without a history."""
    v = VersionTxn(ops)
    if v.has_history(bucket, key):
        return v.get(bucket, key, version_id)
    return current_version(ops, bucket, key, version_id)


def versioning(ops, bucket: str) -> str | None:
    """The bucket's versioning state: None (never versioned), "Enabled" or "Suspended"."""
    record = ops.get_bucket(bucket)
    if record is None:
        raise NoSuchBucket(bucket)
    return record.get("versioning")
