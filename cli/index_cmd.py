"""`pocket index backup` and `pocket index restore`: thin commands over storage/index_backup.py.

Exit status: 0 done, 1 refused or failed (nothing changed; the message says why)."""
from __future__ import annotations

import datetime
import json

import click

from .main import index, load_config, with_cluster


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
