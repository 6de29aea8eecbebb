"""`pocket index backup` / `restore`: a consistent copy of the metadata index.

`pocket index rebuild` recovers the index from the disks alone, but it reads every
archive's manifest on every disk: hours on a full cluster. A backup taken while the
gateway runs (one LMDB read snapshot, so it is consistent without pausing writes)
turns a lost gateway disk into minutes. What a backup cannot know is what was written
after it: restore says so, and `pocket index rebuild` is still the way to get those.

A backup is a folder: `data.mdb` (the compacted copy) and `pocket-index-backup.json`
(when, from where, how many entries). It appears under its final name only once
complete and fsync'd, so a crash mid-backup never leaves something that looks whole.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time

from .index.index import Index
from .index.lmdb_backend import LmdbBackend
from .node.files import fsync_path

MANIFEST = "pocket-index-backup.json"
FORMAT = 1
# Set in a restored index: archives the backup does not know may be acknowledged writes made
# after it was taken, so the scrubber removes no orphans until `pocket index rebuild` runs.
RESTORED_META = "restored_from_backup"


class BackupError(Exception):
    pass


def backup(index_path: str, dest: str) -> dict:
    if not os.path.exists(os.path.join(index_path, "data.mdb")):
        raise BackupError(f"no index at {index_path} (gateway.index): nothing to back up "
                          "(an index on PostgreSQL is backed up with pg_dump)")
    if os.path.exists(dest) and os.listdir(dest):
        raise BackupError(f"{dest} exists and is not empty: back up into a new folder")
    started = time.monotonic()
    partial = f"{dest.rstrip(os.sep)}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    try:
        index = Index(LmdbBackend(index_path))
        try:
            index.backup(partial)
        finally:
            index.close()
        entries = _entries(partial)
        report = {"format": FORMAT, "created": time.time(), "source": os.path.abspath(index_path),
                  "bytes": os.path.getsize(os.path.join(partial, "data.mdb")), "entries": entries,
                  "seconds": round(time.monotonic() - started, 3)}
        with open(os.path.join(partial, MANIFEST), "w") as f:
            json.dump(report, f, indent=2)
        for name in ("data.mdb", MANIFEST):
            fsync_path(os.path.join(partial, name))
        fsync_path(partial)
        if os.path.exists(dest):
            os.rmdir(dest)   # empty, checked above
        os.rename(partial, dest)
        fsync_path(os.path.dirname(os.path.abspath(dest)))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


def restore(index_path: str, src: str, listen: tuple[str, int], force: bool = False) -> dict:
    """Put the backup in `src` in place of the index at `index_path` (the old one is kept aside)."""
    manifest_path = os.path.join(src, MANIFEST)
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise BackupError(f"{src} is not a Pocket index backup ({manifest_path}: {e})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src} has backup format {manifest.get('format')!r}; this Pocket reads {FORMAT}")
    if _listening(*listen):
        raise BackupError(f"something answers on {listen[0]}:{listen[1]} (gateway.listen): stop the gateway "
                          "before restoring its index")
    if os.path.exists(index_path) and os.listdir(index_path) and not force:
        raise BackupError(f"an index exists at {index_path}; pass --force to replace it (it is kept aside, "
                          "not deleted)")
    started = time.monotonic()
    staging = f"{index_path.rstrip(os.sep)}.restoring-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        shutil.copyfile(os.path.join(src, "data.mdb"), os.path.join(staging, "data.mdb"))
        fsync_path(os.path.join(staging, "data.mdb"))
        entries = _entries(staging)
        if entries != manifest["entries"]:
            raise BackupError(f"{src}/data.mdb does not hold what its manifest says ({entries} != "
                              f"{manifest['entries']}): the backup is damaged")
        index = Index(LmdbBackend(staging))
        try:
            index.put_meta(RESTORED_META, {"created": manifest["created"], "restored": time.time(), "from": src})
        finally:
            index.close()
        os.unlink(os.path.join(staging, "lock.mdb"))
        fsync_path(staging)
        kept = None
        if os.path.exists(index_path):
            kept = f"{index_path.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%dT%H%M%S')}"
            os.rename(index_path, kept)
        os.rename(staging, index_path)
        fsync_path(os.path.dirname(os.path.abspath(index_path)))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"index": index_path, "backup": src, "backup_created": manifest["created"], "entries": entries,
            "old_index_kept_at": kept, "seconds": round(time.monotonic() - started, 3)}


def _entries(folder: str) -> dict:
    """Entries per table of the index copy in `folder`, read by opening it as an index."""
    index = Index(LmdbBackend(folder))
    try:
        entries = index.stats()["entries"]
    finally:
        index.close()
    lock = os.path.join(folder, "lock.mdb")
    if os.path.exists(lock):
        os.unlink(lock)
    return entries


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host if host not in ("0.0.0.0", "::", "") else "127.0.0.1", port)) == 0

