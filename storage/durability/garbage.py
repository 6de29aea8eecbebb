"""Garbage collection, step 3 of a scrub pass: archives of versions nobody references.

An archive the index does not reference is a replaced or deleted version whose cleanup
failed, an upload that never committed, or a part of an aborted upload. It is deleted
once older than the orphan grace, and only after its key is looked up again (an upload
may have committed since the index walk). Two safety valves guard against a lost or
half-rebuilt index, which would make everything look orphaned: archives whose bucket the
index does not know are never removed, and a pass that would remove more than a quarter
of all versions it saw (and more than 20) removes nothing unless forced. Both are
reported, so an operator can run `pocket index rebuild` instead.

A *stray* is a copy of a live fragment on a disk that no longer holds its slot (a failed
disk that answers again, or a move whose old copy outlived its wait); it is garbage too,
on the conditions `stray_copies` and `remove_strays` give.
"""
from __future__ import annotations

import logging
import time

from .. import layout
from ..index import disks as disk_table
from ..index_backup import RESTORED_META
from ..node.packs import PacksOwnedElsewhere
from ..objects import in_flight
from ..objects.contracts import VersionRecord
from ..objects.ids import id_time
from .sets import find_set

log = logging.getLogger("pocket.scrub")

ORPHAN_VALVE_FRACTION = 0.25
ORPHAN_VALVE_MIN = 20


async def collect_orphans(cluster, index, r, found: dict[str, dict[int, str]], live: set[str], force: bool,
                          orphan_grace: float, writes: in_flight.Writes, holder: str | None,
                          metrics=None) -> None:
    """Remove archives of versions nobody references, old enough not to be an upload in flight.

    `r` is the pass's ScrubReport: what was removed, kept (and why) or too young goes there.
    `writes` are this process's uploads between store and commit; other processes' come
    from their reports in the index (objects/in_flight.py), `holder` being this one's."""
    now = time.time()
    candidates = []
    elsewhere = await index.call(in_flight.reported, index, skip=holder)
    for vid, where in found.items():
        if vid in live:
            continue
        if vid in writes or vid in elsewhere:   # stored, its commit still to come
            r.orphans_young += len(where)
            continue
        if now - id_time(vid) < orphan_grace:
            r.orphans_young += len(where)
            continue
        owner, stored = await _owner(cluster, vid, where)
        if now - stored < orphan_grace:
            r.orphans_young += len(where)     # a copy (pocket migrate) made just now of an older version
            continue
        rows = [{"disk": d, "archive": layout.archive_name(vid, i), "version_id": vid,
                 "bucket": owner[0] if owner else None, "key": owner[1] if owner else None}
                for i, d in sorted(where.items())]
        if owner and await index.call(index.get_bucket, owner[0]) is None:
            r.orphans_kept += [{**row, "why": "bucket not in the index"} for row in rows]
            continue
        if owner and await index.call(find_set, index, owner[0], owner[1], vid) is not None:
            continue    # looked again: an upload committed since the index walk
        if vid in writes:   # began since the check above (a copy keeps its source's id)
            continue
        candidates.append(rows)
    versions = len(found)
    restored = await index.call(index.get_meta, RESTORED_META)
    if not force and candidates and restored:
        log.warning("scrub: %d versions on disk are not in the index, which was restored from a backup taken "
                    "at %s; they may be writes made since, so none is removed. Run `pocket index rebuild`",
                    len(candidates), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(restored["created"])))
        r.orphans_kept += [{**row, "why": "index restored from a backup"} for rows in candidates for row in rows]
        return
    if not force and len(candidates) > ORPHAN_VALVE_MIN and len(candidates) > versions * ORPHAN_VALVE_FRACTION:
        log.error("scrub: %d of %d versions on disk are not in the index; not removing any. If the index "
                  "was lost or restored from a backup, run `pocket index rebuild`; otherwise "
                  "`pocket scrub --force-orphans` removes them", len(candidates), versions)
        r.orphans_kept += [{**row, "why": "safety valve"} for rows in candidates for row in rows]
        return
    on_removed = metrics.orphans_removed.inc if metrics else None
    await delete_archives(cluster, [row for rows in candidates if rows[0]["version_id"] not in writes
                                    for row in rows], r.orphans_removed, r.orphans_kept, "orphan", on_removed)
    if r.orphans_removed:
        log.info("scrub: removed %d orphaned archives", len(r.orphans_removed))


async def _owner(cluster, vid: str, where: dict[int, str]) -> tuple[tuple[str, str] | None, float]:
    """(bucket, key) from the manifest of any readable archive of the version, and when
    it was stored: its id's time, or `copied` for a version `pocket migrate copy` wrote
    (its id carries the source's Last-Modified, so it looks old while its commit is due)."""
    for i, disk_id in sorted(where.items()):
        try:
            manifest = await cluster.disks[disk_id].read_manifest(layout.archive_name(vid, i))
        except Exception:
            continue
        if "bucket" in manifest and "key" in manifest:
            return (manifest["bucket"], manifest["key"]), float(manifest.get("copied") or id_time(vid))
    return None, id_time(vid)


async def delete_archives(cluster, rows: list[dict], removed: list, kept: list, what: str,
                          on_removed=None) -> None:
    """Delete each row's archive from its disk: removed ones go to `removed`; small archives
    packed on a disk another running process owns go to `kept` (that process's own scrub
    removes them); any other failure is logged and left for the next pass."""
    for row in rows:
        try:
            if await cluster.disks[row["disk"]].delete_archive(row["archive"]):
                removed.append(row)
                if on_removed:
                    on_removed()
        except PacksOwnedElsewhere:
            kept.append({**row, "why": "packed on a disk a running process owns; its own scrub removes it"})
        except Exception as e:
            log.warning("scrub: could not remove %s %s on %s: %r", what, row["archive"], row["disk"], e)


def stray_copies(record: VersionRecord, disks: list[str], damage: dict, copies, scanned: set[str],
                 orphan_grace: float) -> list[dict]:
    """Copies of a live version's fragments on disks that no longer hold its slot.

    A failed disk that answers again, or a move whose old copy outlived its wait (an
    upload still writing there), leaves one. It is only garbage while the slot's own
    disk holds a good copy, nothing is moving, and this process reads the current volume
    table; a version younger than the orphan grace may still be written to."""
    if time.time() - id_time(record["version_id"]) < orphan_grace:
        return []
    rows = []
    for i, slot_disk in enumerate(disks):
        others = [d for d in copies.get((record["version_id"], i), ()) if d != slot_disk]
        if others and slot_disk in scanned and i not in damage:
            rows += [fragment_row(record, i, d, "stray: not this disk's slot") for d in others]
    return rows


async def remove_strays(cluster, index, r, strays: list[dict]) -> None:
    """Delete the stray copies a pass found, unless slots are moving or the volume table
    changed under this process (a copy may then be the only good one)."""
    if not strays:
        return
    moving, generation = await index.call(_moves_and_generation, index)
    if moving or generation != cluster.generation:
        log.info("scrub: %d stray copies kept while slot moves are running or the volume table "
                 "changes; the next pass removes them", len(strays))
        return
    await delete_archives(cluster, strays, r.strays_removed, r.orphans_kept, "stray copy")
    if r.strays_removed:
        log.info("scrub: removed %d stray copies of fragments whose slot is on another disk",
                 len(r.strays_removed))


def _moves_and_generation(index) -> tuple[bool, int]:
    with index.read() as ops:
        return bool(disk_table.moves(ops)), disk_table.generation(ops)


def fragment_row(record: VersionRecord, i: int, disk_id: str, problem: str) -> dict:
    """One fragment as a scrub report lists it (corrupt, missing, stray)."""
    return {"bucket": record["bucket"], "key": record["key"], "version_id": record["version_id"],
            "index": i, "disk": disk_id, "archive": layout.archive_name(record["version_id"], i),
            "problem": problem}
