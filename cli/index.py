"""`pocket index ...`: the metadata index, by hand.

`backup` and `restore` are thin commands over storage/index_backup.py; exit status 0 done,
1 refused or failed (nothing changed; the message says why)."""
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
def index_rebuild(data, config, as_json: bool) -> None:
    """Recreate the index from the disks alone. Stop the gateway first."""
    cfg = load_config(data, config)

    async def run():
        import aiohttp
        from storage.node.open_disks import open_disks
        from storage.index.rebuild import rebuild
        from storage.placement.volumes import build_volumes
        from storage.codec import parse_policy
        async with aiohttp.ClientSession() as session:
            disks, infos = open_disks(cfg, session)
            widths = {sum(parse_policy(s)) for s in cfg.policies.values()}
            volumes = [v for w in sorted(widths) for v in build_volumes(infos, w)]
            return await rebuild(disks, cfg.index_path, volumes)
    import asyncio
    report = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
    else:
        click.echo(f"Rebuilt {cfg.index_path} from {report.disks_scanned} disks in {report.seconds:.1f}s: "
                   f"{report.buckets} buckets, {report.objects} objects, "
                   f"{report.uploads} unfinished multipart uploads ({report.parts} parts) "
                   f"({report.archives} archives; {report.tombstoned} deleted, {report.superseded} superseded "
                   f"versions skipped; {report.unreadable} unrecoverable; {report.versions} versions and delete "
                   f"markers of versioned buckets kept).")
        if report.disks_unreachable:
            click.echo(f"WARNING: disks {report.disks_unreachable} could not be read; run again once they are back.")
    if report.disks_unreachable or report.unreadable:
        sys.exit(1)


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
