"""`pocket index ...`: the metadata index, by hand."""
from __future__ import annotations

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
        for skipped in report.skipped:
            click.echo(f"WARNING: record {skipped['id']} ({skipped['kind']}) was skipped: {skipped['reason']}.")
        if report.records_skipped:
            click.echo(f"{report.records_skipped} records could not be applied and were skipped; check the "
                       "bucket settings and objects they name.")
    if report.disks_unreachable or report.unreadable or report.records_skipped:
        sys.exit(1)
