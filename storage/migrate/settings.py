"""Which source a command talks to: what its command line says, else what the cluster remembers.

`plan` and `enable` record the source settings in the bucket's migration record
(state.py), so `copy`, `verify` and the rest may omit them. Keys given explicitly go to
the 0600 credentials file (credentials.py), never into the record or a log line.
"""
from __future__ import annotations

from dataclasses import replace

from . import credentials, source as source_mod, state
from .state import Migration, Source

_FIELDS = {"source_endpoint": "endpoint", "source_region": "region", "source_profile": "profile",
           "source_addressing": "addressing"}


def targets(buckets: tuple[str, ...] | list[str], target: str | None) -> list[tuple[str, str]]:
    """(source bucket, Pocket bucket) pairs; `--target` renames one bucket only."""
    if target and len(buckets) != 1:
        raise state.MigrationError("--target names the Pocket bucket of one source bucket; give one bucket with it")
    return [(b, target or b) for b in buckets]


def resolve(cfg, index, source_bucket: str, target: str, args: dict) -> tuple[Source, Migration | None, str]:
    """The source settings for `target` and its migration record (None before `plan`/`enable`).

    Returns (source, record, credentials file)."""
    record = state.load(index, target)
    src = record.source if record else Source(bucket=source_bucket)
    if record and source_bucket != target and record.source.bucket != source_bucket:
        src = replace(src, bucket=source_bucket)
    given = {field: args[opt] for opt, field in _FIELDS.items() if args.get(opt) is not None}
    src = replace(src, **given)
    keys_file = credentials.keys_path(cfg.index_path)
    if args.get("source_access_key") and args.get("source_secret_key"):
        credentials.store_keys(keys_file, src, args["source_access_key"], args["source_secret_key"])
    elif bool(args.get("source_access_key")) != bool(args.get("source_secret_key")):
        raise state.MigrationError("give both --source-access-key and --source-secret-key, or neither "
                                   "(then the standard AWS chain is used)")
    return src, record, keys_file


def remember(index, target: str, src: Source, record: Migration | None) -> Migration:
    """Keep the source settings with the bucket's record; a new record starts `planned`."""
    if record is None:
        record = Migration(bucket=target, source=src)
        record.history.append({"state": state.PLANNED, "at": record.created, "note": "plan"})
    else:
        record.source = src
    state.save(index, record)
    return record


def client_for(src: Source, keys_file: str, concurrency: int = 32):
    return source_mod.client(src, keys_file, max_connections=max(10, concurrency + 4))
