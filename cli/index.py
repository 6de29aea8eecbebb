"""`pocket index ...`: the metadata index, by hand.

`rebuild` recreates it from the disks. The PostgreSQL schema is created and upgraded only
by `migrate-schema` (versioned, one transaction, safe to run twice); `copy` moves a
cluster's whole index between backends (storage/index/copy.py: resumable, verified by
counts and checksums). Stop the gateways before a copy; point their config at the
destination after it. `backup` and `restore` are thin commands over
storage/index_backup.py (LMDB; PostgreSQL is backed up with pg_dump); exit status 0 done,
1 refused or failed (nothing changed; the message says why).
"""
from __future__ import annotations

import datetime
import json
import sys

import click

from .common import load_config, with_cluster


@click.group()
def index() -> None:
    """Maintain the metadata index."""


@index.command("rebuild")
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--force", is_flag=True, help="Rebuild even while buckets are being migrated out of S3 (their "
              "migration state is lost: see storage/migrate/rebuild_guard.py).")
def index_rebuild(data, config, as_json: bool, force: bool) -> None:
    """Recreate the index from the disks alone. Stop the gateway first."""
    cfg = load_config(data, config)
    from storage.migrate import rebuild_guard

    async def run():
        import aiohttp
        from storage.node.open_disks import open_disks
        from storage.index.index import open_index
        from storage.index.rebuild import rebuild
        from storage.placement.volumes import build_volumes
        from storage.policy_spec import parse_policy
        index = open_index(cfg)
        try:
            if not force:     # what the index knows refuses at once, before an hour of scanning
                rebuild_guard.check(index, {})
            async with aiohttp.ClientSession() as session:
                disks, infos = open_disks(cfg, session)
                widths = {sum(parse_policy(s)) for s in cfg.policies.values()}
                volumes = [v for w in sorted(widths) for v in build_volumes(infos, w)]
                check = None if force else (lambda buckets: rebuild_guard.check(index, buckets))
                return index.describe(), await rebuild(disks, index, volumes, check)
        finally:
            index.close()
    import asyncio
    try:
        where, report = asyncio.run(run())
    except rebuild_guard.MigrationInProgress as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
    else:
        click.echo(f"Rebuilt {where} from {report.disks_scanned} disks in {report.seconds:.1f}s: "
                   f"{report.buckets} buckets, {report.objects} objects, "
                   f"{report.uploads} unfinished multipart uploads ({report.parts} parts) "
                   f"({report.archives} archives; {report.tombstoned} deleted, {report.superseded} superseded "
                   f"versions skipped; {report.unreadable} unrecoverable; {report.versions} versions and delete "
                   f"markers of versioned buckets kept).")
        if report.disks_unreachable:
            click.echo(f"WARNING: disks {report.disks_unreachable} could not be read; run again once they are back.")
        for skipped in report.skipped:
            click.echo(f"WARNING: record {skipped['id']} ({skipped['kind']}) was skipped: {skipped['reason']}.")
        for row in report.interrupted:
            click.echo(f"WARNING: {row['bucket']}/{row['key']} version {row['version_id']}: {row['why']}; an "
                       "upload interrupted before it was acknowledged (not a loss).")
        for row in report.lost:
            click.echo(f"LOST: {row['bucket']}/{row['key']} version {row['version_id']}: {row['why']}; it may "
                       "have been acknowledged: bring back missing or failed disks and rebuild again.")
        if report.records_skipped:
            click.echo(f"{report.records_skipped} records could not be applied and were skipped; check the "
                       "bucket settings and objects they name.")
    if report.disks_unreachable or report.unreadable or report.records_skipped:
        sys.exit(1)


@index.command("migrate-schema")
@with_cluster
@click.option("--dsn", help="PostgreSQL DSN (default: index.dsn of the config, or POCKET_INDEX_DSN).")
def migrate_schema(data, config, dsn: str | None) -> None:
    """Create or upgrade the index schema in PostgreSQL; fill the volume index (either backend)."""
    from storage.index.backend import MetadataIndexError
    from storage.index.index import upgrade
    from storage.index.pg_backend import redact
    if not dsn:
        dsn = load_config(data, config).index_url
    try:
        before, after, filled = upgrade(dsn)
    except MetadataIndexError as e:
        raise click.ClickException(str(e)) from None
    if dsn.startswith("lmdb:"):
        click.echo(f"{dsn}: LMDB needs no schema; ", nl=False)
    elif before == after:
        click.echo(f"{redact(dsn)}: schema is at version {after}; nothing to do; ", nl=False)
    else:
        click.echo(f"{redact(dsn)}: schema migrated from version {before} to {after}; ", nl=False)
    click.echo(f"volume index filled from {filled} records." if filled else "volume index complete.")


@index.command("copy")
@with_cluster
@click.option("--from", "source", help="lmdb:FOLDER or postgresql://... to copy from (default: the config's index).")
@click.option("--to", "dest", required=True, help="lmdb:FOLDER or postgresql://... to copy into (empty).")
@click.option("--batch", default=2000, show_default=True, help="Rows per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def copy(data, config, source: str | None, dest: str, batch: int, as_json: bool) -> None:
    """Copy the whole index between backends; stop the gateways first.

    Resumes an interrupted copy of the same source; exits 1 when the verification
    finds the two sides different (run it again with every gateway stopped)."""
    from storage.index.backend import MetadataIndexError
    from storage.index.copy import CopyMismatch, copy_index
    from storage.index.index import open_url
    if not source:
        source = load_config(data, config).index_url
    try:
        src, dst = open_url(source), open_url(dest)
    except (MetadataIndexError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    try:
        report = copy_index(src, dst, batch, progress=lambda table, rows: click.echo(
            f"\rcopying {table}: {rows} rows", nl=False, err=True))
        click.echo("", err=True)
    except CopyMismatch as e:
        click.echo(f"\nERROR: {e}", err=True)
        sys.exit(1)
    except MetadataIndexError as e:
        raise click.ClickException(str(e)) from None
    finally:
        src.close()
        dst.close()
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
    else:
        click.echo(f"Copied {src.describe()} to {dst.describe()} in {report.seconds:.1f}s"
                   f"{' (resumed)' if report.resumed else ''}: {report.copied} rows written; verified "
                   f"{sum(report.rows.values())} rows in {len(report.rows)} tables, checksum {report.checksum}.")


@index.command("backup")
@with_cluster
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def index_backup(data, config, dest: str, as_json: bool) -> None:
    """Copy the index into the new folder DEST, consistently, while the gateway keeps running."""
    from storage.index_backup import BackupError, backup
    cfg = load_config(data, config)
    try:
        report = backup(cfg.index_path, dest)
    except BackupError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"Backed up {cfg.index_path} to {dest} in {report['seconds']:.2f}s: {report['bytes']} bytes, "
                   f"{sum(report['entries'].values())} entries.")


@index.command("restore")
@with_cluster
@click.argument("src", type=click.Path(file_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Replace an existing index (it is moved aside, not deleted).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def index_restore(data, config, src: str, force: bool, as_json: bool) -> None:
    """Put the backup SRC in place of the index. Stop the gateway first."""
    from storage.index_backup import BackupError, restore
    cfg = load_config(data, config)
    try:
        report = restore(cfg.index_path, src, cfg.listen, force=force)
    except BackupError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    taken = datetime.datetime.fromtimestamp(report["backup_created"], datetime.timezone.utc)
    click.echo(f"Restored {cfg.index_path} from {src} (taken {taken:%Y-%m-%d %H:%M:%S} UTC) in "
               f"{report['seconds']:.2f}s." + (f" The old index is kept at {report['old_index_kept_at']}."
                                                 if report["old_index_kept_at"] else ""))
    click.echo("Objects written after the backup was taken are on the disks but not in this index: "
               "`pocket index rebuild` finds them (it reads every disk).")
