"""Rewriting corrupt packed records (tombstones, bucket events) from their copies.

Records are written to every disk of the system volume that is up (objects/service.py
`write_record`), so each one has copies elsewhere. A record a disk's scrubber finds
failing its checksum is read back from another disk (whose pack checksum, or its file,
vouches for it) and written again to the disk that lost it; the new append supersedes
the corrupt one there, and the disk's next scrub pass clears its finding. Without this a
later `pocket index rebuild` would still find the copies, but one more lost disk could
leave a delete with no tombstone anywhere, and the deleted object would come back.
"""
from __future__ import annotations

import logging
from collections import defaultdict

log = logging.getLogger("pocket.scrub")


async def rewrite_records(cluster, corrupt: list[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    """(rewritten, left) for each (disk id, record id) found corrupt."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for disk_id, rec_id in corrupt:
        wanted[rec_id].add(disk_id)
    copies = await _find_copies(cluster, wanted)
    rewritten, left = [], []
    for rec_id, bad_disks in sorted(wanted.items()):
        for disk_id in sorted(bad_disks):
            row = {"disk": disk_id, "record": rec_id}
            found = copies.get(rec_id)
            if found is None:
                left.append({**row, "why": "no good copy on any disk that answers"})
                log.error("scrub: packed record %s on disk %s is corrupt and no other disk that answers holds a "
                          "good copy; bring back the disks that are down, then scrub again", rec_id, disk_id)
                continue
            try:
                await cluster.disks[disk_id].put_record(rec_id, found[1])
            except Exception as e:
                left.append({**row, "why": repr(e)})
                log.warning("scrub: could not rewrite record %s on disk %s: %r; the next pass tries again",
                            rec_id, disk_id, e)
                continue
            rewritten.append({**row, "from": found[0]})
            log.info("scrub: corrupt record %s on disk %s rewritten from its copy on %s", rec_id, disk_id, found[0])
    return rewritten, left


async def _find_copies(cluster, wanted: dict[str, set[str]]) -> dict[str, tuple[str, bytes]]:
    """A good copy (disk id, bytes) of each wanted record, from disks that did not report it bad.
    Reads the disks' record listings one disk at a time and stops once all are found."""
    copies: dict[str, tuple[str, bytes]] = {}
    for disk_id, disk in sorted(cluster.disks.items()):
        if len(copies) == len(wanted):
            break
        if not cluster.is_up(disk_id):
            continue
        try:
            async for rec_id, data in disk.iter_records():
                if rec_id in wanted and rec_id not in copies and disk_id not in wanted[rec_id]:
                    copies[rec_id] = (disk_id, data)
        except Exception as e:
            log.warning("scrub: could not list the records of disk %s (%r) while looking for copies", disk_id, e)
    return copies
