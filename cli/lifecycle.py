"""`pocket lifecycle`: one lifecycle pass from the command line (storage/lifecycle/runner.py)."""
from __future__ import annotations

import json
import sys

import click

from .common import load_config, run_tool, with_cluster


@click.command()
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--dry-run", is_flag=True, help="Only list what the rules would expire and abort now.")
def lifecycle(data, config, as_json: bool, dry_run: bool) -> None:
    """Run one lifecycle pass: expire objects and versions, abort incomplete uploads, as the buckets' rules say.

    Works whether the gateway runs or not. Exit status 1 if some removal failed (the next
    pass retries it)."""
    cfg = load_config(data, config)

    async def work(tc):
        from storage.objects.build import object_services
        from storage.index.batcher import IndexWriter
        from storage.lifecycle.runner import LifecycleRunner
        writer = IndexWriter(tc.index)
        try:
            objects, multipart = object_services(cfg, tc.cluster, tc.index, writer)
            runner = LifecycleRunner(objects, multipart, cfg.lifecycle.day_seconds, cfg.lifecycle.rate)
            report = await runner.run_once(dry_run=dry_run)
            await objects.drain(timeout=60)
            return report
        finally:
            await writer.aclose()
    report = run_tool(cfg, work)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        verb = "Would expire" if dry_run else "Expired"
        for a in report.actions:
            what = {"abort": f"upload {a.get('upload_id')} of ",
                    "expire-version": f"{'delete marker' if a.get('delete_marker') else 'version'} "
                                      f"{a.get('version_id')} of "}.get(a["action"], "")
            click.echo(f"  {a['action'].upper():14} {what}{a['bucket']}/{a['key']} (rule {a['rule']})")
        click.echo(f"{verb} {report.objects_expired} objects and {report.versions_expired} versions, "
                   f"{'would abort' if dry_run else 'aborted'} {report.uploads_aborted} incomplete uploads "
                   f"in {report.buckets} buckets with rules ({report.objects_scanned} objects checked, "
                   f"{report.seconds:.1f}s); {report.errors} errors.")
        if report.locked_skipped:
            click.echo(f"Kept {report.locked_skipped} versions the rules would expire: Object Lock protects them "
                       "(retention or legal hold); they expire on a pass after the lock ends.")
    if report.errors:
        sys.exit(1)
