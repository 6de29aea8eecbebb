"""Recreate the index from the disks alone, into either backend.

The disks are self-describing: every fragment archive ends with its object's manifest,
and bucket events and deletes are small records on the disks. The rebuild lists every
disk, reads one manifest per object version, and replays:

- buckets: `bucket` / `bucket-deleted` records in id (time) order; a bucket that holds
  objects exists even if its record was lost.
- objects: per key, the newest version that has at least `k` fragments and is newer
  than the version the key's newest tombstone deleted (not than the tombstone itself: a
  PUT that started before a DELETE and committed after it is the key's object; a
  tombstone of a key the index did not have names no version and ends every version
  older than itself: a PUT whose reply was lost must not come back). Older
  versions and tombstoned ones are garbage for the scrubber, never resurrected.
- versioned buckets (versioning Enabled or Suspended by their `bucket-config` records):
  every version and delete marker (`delete-marker` records) newer than the key's
  tombstone survives, except those deleted for good (`version-deleted` records; one for
  a null version also ends every older null version; one marked "uncommitted" ends a
  version whose index commit failed, see ObjectService.discard) and null versions
  replaced by a newer null one. The newest survivor is current unless it is a delete
  marker.
- completed multipart objects are versions like any other: the record (kind "object")
  is on the disks of the first part's volume, and it is recoverable when every part it lists has at least `k` fragments.
  An object record of an upload that was later aborted and whose parts are gone is a
  Complete that never committed (it crashed between its disk record and its index
  commit), not a lost object.
- multipart uploads: parts (archives whose manifest has kind "part") of an upload that
  was neither completed (an "object" record names it) nor aborted (an "upload-aborted"
  record) are restored, with their upload, newest part of each number winning. Parts of
  completed or aborted uploads are garbage for the scrubber.
- tags, ACLs and Object Lock: the newest `tags` (`acl`, `retention`, `legal-hold`)
  record of a surviving version replaces what its manifest was written with (those
  changes do not rewrite archives); so does an `s3-version` record (the source's version
  id and Last-Modified of a version dual-written during a migration, known only after its
  archives were).
  A `version-deleted` record that a `delete-refused` record names was refused by Object
  Lock inside the index transaction: it ends nothing.
- bucket configuration (CORS rules, canned ACL): `bucket-config` records, replayed in
  id order over the bucket they name; a `None` value removes the field. Migration state
  is not on the disks, only a marker that one is in progress (the caller's `check`
  refuses then: migrate/rebuild_guard.py).
- volumes and disk states: the newest `volume-table` record (written to every disk
  whenever a disk fails, is drained or replaced, or the table grows or is rebalanced);
  volumes it does not list from the manifests (each names its volume's disks when it
  was written), corrected by where the fragments are now; then the volumes the config
  would create for widths nobody has written to yet.

Interrupted uploads. A version (or part) with fewer than `k` fragments cannot be read
back. Whether that is a loss depends on whether it was ever acknowledged, and the disks
can prove the negative: a PUT is acknowledged only once its write quorum (at least `k`
fragments, `k+1` by default) is fsync'd, and a fragment once written leaves a disk only
by a delete (which a tombstone or version-deleted record explains) or with its disk. So
if the fragments found plus the disks of its volume that could have lost one (disks that
did not answer this scan, or that the newest volume table says failed) are fewer than
`k`, the version was never acknowledged: an upload a crash interrupted. (Not for the
parts of a completed multipart object: Complete lists only acknowledged parts.) It is reported
as `interrupted` (a warning) and left to the scrubber as garbage. Otherwise it may have
been acknowledged and lost, and is counted `unreadable` (a failure: find the disks).
A disk swapped for an empty one under the same id without `pocket disk fail` looks
like a disk that never held anything; that is the one case this cannot see.

Everything is worked out in memory first; then one write transaction empties every
table and fills them again, so an interrupted rebuild (or one that fails) leaves the old
index as it was, in LMDB and PostgreSQL alike.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict

import orjson

from . import disks as disk_table
from . import volume_index
from .backend import TABLES
from .disk_scan import RebuildReport, read_manifest, scan
from .index import Index
from .uploads import UploadTxn
from .versions import VersionTxn

log = logging.getLogger("pocket.rebuild")


async def rebuild(disks: dict, index: Index, config_volumes, check=None) -> RebuildReport:
    """Replace everything `index` holds with what the disks say (see module docstring).

    `check(buckets)` sees the bucket records the disks hold before anything is replaced,
    and may raise to leave the index as it was (the migration guard, migrate/rebuild_guard.py)."""
    started = time.monotonic()
    versions, records, report = await scan(disks)
    manifests: dict[str, dict] = {}
    sem = asyncio.Semaphore(64)

    async def load(vid, frags):
        async with sem:
            m = await read_manifest(disks, vid, frags)
            if m is None:
                report.unreadable += 1
            else:
                manifests[vid] = m
    await asyncio.gather(*(load(v, f) for v, f in versions.items()))

    tombs: dict[tuple[str, str], str] = {}
    buckets: dict[str, dict | None] = {}
    candidates: dict[tuple[str, str], list[tuple[str, dict]]] = defaultdict(list)
    ended: set[str] = set()  # upload ids that were completed or aborted
    dead: set[str] = set()  # versions deleted for good (version-deleted records)
    uncommitted: set[str] = set()  # of those, versions whose index commit failed (never acknowledged)
    completions: list[tuple[str, str]] = []  # (upload id, object version) of every Complete written
    null_floor: dict[tuple[str, str], str] = {}  # a deleted null version: null versions up to it are gone
    aborted: set[str] = set()
    retagged: dict[str, dict] = {}  # version id -> its newest tags
    amended: dict[str, dict] = {}  # version id -> its newest acl, retention, legal hold
    deletions: list[tuple[str, dict]] = []  # version-deleted records, applied unless refused
    refused: set[str] = set()  # ids of version-deleted records Object Lock refused (delete-refused)
    table = None   # the newest volume table a disk holds
    for rec_id in sorted(records):
        rec = records[rec_id]
        problem = _unusable(rec)
        if problem:
            report.skip(rec_id, rec.get("kind") if isinstance(rec, dict) else None, problem)
            continue
        try:
            if rec.get("kind") == "volume-table":
                if table is None or rec["generation"] >= table["generation"]:
                    table = rec
            elif rec.get("kind") == "tags":
                retagged[rec["version_id"]] = rec.get("tags") or {}
            elif rec.get("kind") == "acl":
                amended.setdefault(rec["version_id"], {})["acl"] = rec.get("acl", "private")
            elif rec.get("kind") == "retention":
                amended.setdefault(rec["version_id"], {})["retention"] = rec.get("retention")
            elif rec.get("kind") == "legal-hold":
                amended.setdefault(rec["version_id"], {})["legal_hold"] = rec.get("legal_hold")
            elif rec.get("kind") == "s3-version":
                facts = amended.setdefault(rec["version_id"], {})
                if isinstance(rec.get("s3_version_id"), str):
                    facts["s3_version_id"] = rec["s3_version_id"]
                if isinstance(rec.get("created"), (int, float)):   # the source's Last-Modified
                    facts["created"] = rec["created"]
            elif rec.get("kind") == "delete-refused":
                refused.add(rec["record"])
            elif rec.get("kind") == "tombstone":
                k = (rec["bucket"], rec["key"])
                tombs[k] = max(tombs.get(k, ""), rec.get("version_id") or rec_id)
            elif rec.get("kind") == "bucket":
                buckets[rec["name"]] = {"name": rec["name"], "owner": rec.get("owner", ""),
                                        "created": rec.get("created", 0)}
                for kept in ("acl", "ownership", "object_lock", "versioning"):
                    if rec.get(kept):
                        buckets[rec["name"]][kept] = rec[kept]
            elif rec.get("kind") == "bucket-config":
                if buckets.get(rec["name"]) is not None:
                    bucket = buckets[rec["name"]]
                    for field_name, value in (rec.get("config") or {}).items():
                        if value is None:
                            bucket.pop(field_name, None)
                        else:
                            bucket[field_name] = value
            elif rec.get("kind") == "bucket-deleted":
                buckets[rec["name"]] = None
            elif rec.get("kind") == "version-deleted":
                deletions.append((rec_id, rec))
                if rec.get("uncommitted"):
                    uncommitted.add(rec["version_id"])
            elif rec.get("kind") in ("object", "delete-marker"):
                m = rec["object"]
                candidates[(m["bucket"], m["key"])].append((m["version_id"], m))
                completions.append((m.get("upload_id", ""), m["version_id"]))
            elif rec.get("kind") == "upload-aborted":
                ended.add(rec["upload_id"])
                aborted.add(rec["upload_id"])
        except (KeyError, TypeError, AttributeError, ValueError) as e:   # a field missing or of the wrong type
            report.skip(rec_id, rec.get("kind"), f"{type(e).__name__}: {e}")
    for rec_id, rec in deletions:
        if rec_id in refused:   # Object Lock refused it in the index transaction: the version stays
            continue
        dead.add(rec["version_id"])
        if rec.get("null"):
            k = (rec["bucket"], rec["key"])
            null_floor[k] = max(null_floor.get(k, ""), rec["version_id"])
    # a Complete whose commit failed left its upload open
    ended.update(uid for uid, vid in completions if vid not in uncommitted)
    part_manifests = []
    for vid, m in manifests.items():
        if m.get("kind") == "part":
            part_manifests.append(m)
        else:
            candidates[(m["bucket"], m["key"])].append((vid, m))

    lost = set(report.disks_unreachable) | {d for d, st in (table or {}).get("states", {}).items()
                                            if st.get("state") == disk_table.FAILED}
    winners: dict[tuple[str, str], dict] = {}
    history: dict[tuple[str, str], list[dict]] = {}
    for k, versions_of_key in candidates.items():
        kept = []
        for vid, m in sorted(versions_of_key, key=lambda c: c[0], reverse=True):
            if vid <= tombs.get(k, ""):
                report.tombstoned += 1
            elif kept and not _versioned(buckets, k[0]):
                report.superseded += 1
            elif vid in dead or (not m.get("versioned") and vid <= null_floor.get(k, "")):
                report.tombstoned += 1
            elif not m.get("versioned") and any(not v.get("versioned") for v in kept):
                report.superseded += 1  # an older null version, replaced by the newer one
            elif m.get("upload_id") in aborted and _unrecoverable(m, versions):
                # A Complete that wrote its record but crashed before its index commit, and
                # the upload was aborted afterwards (which removed the parts): never an object.
                report.superseded += 1
            elif not m.get("delete_marker") and _unrecoverable(m, versions):
                report.short(m, vid, _unrecoverable(m, versions), _never_acknowledged(m, versions, lost))
            else:
                m = {**m, "tags": retagged[vid]} if vid in retagged else m
                kept.append({**m, **amended[vid]} if vid in amended else m)
        if kept and _versioned(buckets, k[0]):
            history[k] = kept
        if kept and not kept[0].get("delete_marker"):
            winners[k] = kept[0]
    uploads = _open_uploads([m for m in part_manifests if m["version_id"] not in dead], ended, versions, report,
                            lost)

    volumes = _volumes(manifests, versions)
    volumes.update({v["id"]: v for v in (table or {}).get("volumes", [])})
    for v in config_volumes:
        volumes.setdefault(v["id"], v)

    if check is not None:
        check(buckets)

    def fill(ops):
        for name in TABLES:
            ops.txn.clear(name)
        for (bucket, _key), m in [*winners.items(), *((k, v[0]) for k, v in history.items())]:
            if buckets.get(bucket) is None:
                buckets[bucket] = {"name": bucket, "owner": m.get("owner", ""), "created": m["created"]}
        for name, rec in buckets.items():
            if rec is not None:
                ops.create_bucket(name, rec)
        for (bucket, key), m in winners.items():
            ops.put_object(bucket, key, m)
        for (bucket, key), kept in history.items():
            for m in kept:
                VersionTxn(ops).put(bucket, key, m)
        # an upload whose bucket was deleted ended with it
        restored = [(u, stored) for u, stored in uploads if buckets.get(u["bucket"]) is not None]
        for upload, stored in restored:
            up = UploadTxn(ops)
            up.create_upload(upload["bucket"], upload["key"], upload)
            for number, part in sorted(stored.items()):
                up.put_part(upload["bucket"], upload["key"], upload["upload_id"], number, part)
        report.uploads, report.parts = len(restored), sum(len(stored) for _, stored in restored)
        ops.put_volumes(sorted(volumes.values(), key=lambda v: v["id"]))
        if table is not None:
            disk_table.restore(ops, table["generation"], table.get("states", {}))
        ops.txn.put(volume_index.TABLE, volume_index.FILLED, b"")   # every record above was indexed as written
    await asyncio.get_running_loop().run_in_executor(None, index.write, fill)
    report.buckets = sum(1 for b in buckets.values() if b is not None)
    report.objects = len(winners)
    report.versions = sum(len(kept) for kept in history.values())
    report.seconds = time.monotonic() - started
    return report


def _unusable(rec) -> str | None:
    """Why a record cannot go into the index, or None. Records are written with the
    index's own encoder, so this only catches records written before that (or forged):
    one bad bucket setting must not stop the whole rebuild."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    try:
        orjson.dumps(rec)
    except TypeError as e:   # orjson.JSONEncodeError: an integer past 64 bits, a lone surrogate
        return f"the index cannot store it: {e}"
    return None


def _versioned(buckets: dict, name: str) -> bool:
    """Whether a bucket was ever versioned (its history is kept, not just its latest)."""
    return bool((buckets.get(name) or {}).get("versioning"))


def _volumes(manifests: dict[str, dict], versions: dict[str, dict[int, str]]) -> dict[str, dict]:
    """Each volume's disks as the archives show them now.

    A manifest names the disks its volume had when it was written; a slot moved since
    (a failed disk rebuilt elsewhere, a drain, a rebalance) is seen in where fragment
    `i` of the volume's versions actually is. The disk most versions agree on wins."""
    written: dict[str, list[str]] = {}
    votes: dict[tuple[str, int], Counter] = defaultdict(Counter)
    for vid, m in sorted(manifests.items()):
        if "disks" not in m:
            continue
        written[m["volume"]] = m["disks"]
        for i, disk_id in versions.get(vid, {}).items():
            votes[(m["volume"], i)][disk_id] += 1
    volumes = {}
    for vol, disks in written.items():
        seen = [votes[(vol, i)].most_common(1)[0][0] if votes.get((vol, i)) else d for i, d in enumerate(disks)]
        volumes[vol] = {"id": vol, "width": len(disks), "disks": seen if len(set(seen)) == len(seen) else disks}
    return volumes


def _unrecoverable(m: dict, versions: dict[str, dict[int, str]]) -> str:
    """Why a version cannot be read back from the fragments found ('' if it can)."""
    for part in m.get("parts") or [m]:
        have = len(versions.get(part["version_id"], {}))
        if have < part["k"]:
            what = f"part {part['number']} ({part['version_id']})" if "number" in part else "it"
            return f"{what} has {have} fragments, needs {part['k']}"
    return ""


def _never_acknowledged(m: dict, versions: dict[str, dict[int, str]], lost: set[str]) -> bool:
    """Whether the disks prove that a short version (or part) was never acknowledged: the
    fragments found plus the disks of its volume that may have lost one are fewer than
    `k` (module docstring). Never for a completed multipart object: a Complete lists
    only parts whose UploadPart was acknowledged, so a short part of one is a loss."""
    if m.get("parts"):
        return False
    have = len(versions.get(m["version_id"], {}))
    written = set(m.get("disks") or ())
    maybe_lost = len(lost & written) if written else len(lost)
    return have + maybe_lost < m["k"]


def _open_uploads(part_manifests: list[dict], ended: set[str], versions: dict,
                  report: RebuildReport, lost: set[str]) -> list[tuple[dict, dict[int, dict]]]:
    """Uploads still in progress, from their parts' manifests: (upload, {number: part})."""
    found: dict[str, tuple[dict, dict[int, dict]]] = {}
    for m in sorted(part_manifests, key=lambda m: m["version_id"], reverse=True):
        uid = m["upload_id"]
        if uid in ended:
            continue
        upload = {"upload_id": uid, "bucket": m["bucket"], "key": m["key"], **m["upload"]}
        stored = found.setdefault(uid, (upload, {}))[1]
        if m["part_number"] in stored:
            report.superseded += 1  # an older upload of the same part number
        elif len(versions.get(m["version_id"], {})) < m["k"]:
            report.short(m, m["version_id"], f"part {m['part_number']} of upload {uid} has too few fragments",
                         _never_acknowledged(m, versions, lost))
        else:
            stored[m["part_number"]] = m
    return list(found.values())
