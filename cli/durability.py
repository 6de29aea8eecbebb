"""`pocket scrub`, `pocket repair`, `pocket status`: thin commands over storage/durability/
and storage/tools/status.py.

They work with the cluster running or stopped (storage/tools/cluster.py), print a
progress bar on stderr and a report on stdout (`--json` for machines)."""
from __future__ import annotations

import json
import sys

import click
import orjson

from .common import Progress, load_config, run_tool, with_cluster


def _run_pass(data, config, label: str, as_json: bool, run, write_files: bool = False, lazy_packs: bool = False):
    """Scrub, repair and upgrade are one shape: a pass over the cluster with a progress bar
    that must be closed before the report is printed, and the report as JSON on request.
    `run(cfg, tc, progress)` does the pass; the caller prints the text report.
    `write_files`, `lazy_packs`: see run_tool."""
    cfg = load_config(data, config)
    progress = Progress(label)

    async def work(tc):
        try:
            return await run(cfg, tc, progress)
        finally:
            progress.close()
    report = run_tool(cfg, work, write_files=write_files, lazy_packs=lazy_packs)
    if as_json:   # orjson: the json module indents in Python, ~0.15 ms per entry of a repair's report
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return report


@click.command()
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--rate", type=click.IntRange(min=0), default=None,
              help="Bytes per second each disk reads (default: scrub.rate; 0: no limit).")
@click.option("--orphan-grace", type=float, default=None,
              help="Seconds an unreferenced archive must be old before removal (default: scrub.orphan_grace).")
@click.option("--keep-orphans", is_flag=True, help="Report orphaned archives but do not remove them.")
@click.option("--force-orphans", is_flag=True, help="Remove orphans even past the safety valve (see docs).")
def scrub(data, config, as_json: bool, rate, orphan_grace, keep_orphans: bool, force_orphans: bool) -> None:
    """Have every disk read and check all its archives now; queue damage for repair; remove orphans.

    Disks of running nodes scrub themselves (asked over the internal API); disk folders
    of stopped nodes and in-process disks are checked by this command.

    Exit status: 0 all good, 1 damage found (queued: run `pocket repair`),
    2 some disks could not be scrubbed."""
    async def run(cfg, tc, progress):
        from storage.durability.scrub import Scrubber
        scrubber = Scrubber(tc.cluster, tc.index, tc.queue, rate,
                            cfg.scrub.orphan_grace if orphan_grace is None else orphan_grace)
        return await scrubber.run_once(on_bytes=progress.step, on_listed=progress.start, fresh=True,
                                       remove_orphans=not keep_orphans, force_orphans=force_orphans)
    report = _run_pass(data, config, "Scrubbing", as_json, run)
    if not as_json:
        click.echo(f"Scrubbed {report.archives} archives ({report.bytes_verified / 2**20:.1f} MiB) on "
                   f"{report.disks - len(report.disks_skipped)} of {report.disks} disks in {report.seconds:.1f}s "
                   f"({report.bytes_verified / 2**20 / max(report.seconds, 1e-9):.1f} MiB/s); "
                   f"{report.versions} object versions and parts checked.")
        for row in report.corrupt:
            click.echo(f"  CORRUPT {row['bucket']}/{row['key']} fragment {row['index']} on {row['disk']}: "
                       f"{row['problem']}")
        for row in report.missing:
            click.echo(f"  MISSING {row['bucket']}/{row['key']} fragment {row['index']} on {row['disk']}")
        click.echo(f"{len(report.corrupt)} corrupt, {len(report.missing)} missing ({report.queued} objects queued "
                   f"for repair); {len(report.orphans_removed)} orphaned archives removed, "
                   f"{report.orphans_young} too young to judge, {len(report.orphans_kept)} kept by a safety valve.")
        for row in report.records_rewritten:
            click.echo(f"  REWRITTEN corrupt record {row['record']} on {row['disk']} from its copy on {row['from']}")
        for row in report.records_left:
            click.echo(f"  CORRUPT record {row['record']} on {row['disk']}, not rewritten: {row['why']}")
        if report.disks_skipped:
            click.echo(f"WARNING: disks {sorted(set(report.disks_skipped))} were not scrubbed (down or failing).")
    if report.disks_skipped:
        sys.exit(2)
    if report.corrupt or report.missing:
        sys.exit(1)


@click.command()
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--concurrency", type=int, default=None, help="Objects rebuilt at once (default: repair.concurrency).")
@click.option("--rate", type=click.IntRange(min=0), default=None,
              help="Bytes per second of fragments rebuilt (default: repair.rate; 0: no limit).")
def repair(data, config, as_json: bool, concurrency, rate) -> None:
    """Rebuild every fragment in the repair queue, least redundancy first.

    Exit status: 0 when the queue is empty afterwards, 1 when something could not be
    repaired (a disk is down, or too few good fragments are left)."""
    async def run(cfg, tc, progress):
        from storage.durability.repair import Repairer
        repairer = Repairer(tc.cluster, tc.index, tc.queue, concurrency or cfg.repair.concurrency,
                            cfg.storage.node_timeout, rate=cfg.repair.rate if rate is None else rate)
        progress.start(tc.queue.length())
        return await repairer.run_once(on_entry=lambda _entry: progress.step())
    # lazy_packs: a repair reads only the archives its queue names (an empty queue none), so
    # the packs of a folder attached beside its running owner are scanned only when one of
    # them may be packed (node/deferred_packs.py), not at start-up (~7 us a pack record)
    report = _run_pass(data, config, "Repairing", as_json, run, write_files=True, lazy_packs=True)
    if not as_json:
        mib = report.bytes_written / 2**20
        click.echo(f"Repaired {report.fragments} fragments of {len(report.repaired)} objects ({mib:.1f} MiB) "
                   f"in {report.seconds:.1f}s ({mib / max(report.seconds, 1e-9):.1f} MiB/s); "
                   f"{report.found_good} reported fragments were fine; {report.dropped} entries were for "
                   f"deleted or replaced versions.")
        for row in report.deferred:
            why = row.get("why") or f"disks {row['disks']} are down"
            click.echo(f"  WAITING {row['bucket']}/{row['key']} version {row['version_id']} {row['indexes']}: {why}")
        for row in report.failed:
            click.echo(f"  FAILED  {row['bucket']}/{row['key']}: {row['error']}")
        click.echo(f"{report.remaining} object versions still queued.")
    if report.remaining:
        sys.exit(1)


@click.command()
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(data, config, as_json: bool) -> None:
    """Disks, volumes, objects, objects at risk, scrub progress and estimated durability."""
    cfg = load_config(data, config)

    async def work(tc):
        from storage.tools.status import collect
        return await collect(tc)
    st = run_tool(cfg, work, lazy_packs=True)   # reads no archive: the packs need no scan
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        from storage.tools.status import render
        click.echo(render(st))


@click.command()
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def upgrade(data, config, as_json: bool) -> None:
    """Rewrite objects stored before keyed checksums in the keyed format (resumable).

    Each object is read back whole and checked against its ETag before its archives are
    rewritten, so a forged fragment is never sealed. Exit status 1 when some objects are
    still unkeyed (a disk down, damage to repair first, or multipart objects)."""
    async def run(cfg, tc, progress):
        from storage.durability.upgrade import Upgrader
        progress.start(sum(1 for b in tc.index.list_buckets() for _ in tc.index.iter_versions(b["name"])))
        return await Upgrader(tc.cluster, tc.index, cfg.storage.node_timeout).run_once(
            on_version=lambda _record: progress.step())
    report = _run_pass(data, config, "Upgrading", as_json, run)
    if not as_json:
        click.echo(f"{report.upgraded} object versions rewritten with keyed checksums "
                   f"({report.bytes_written / 2**20:.1f} MiB) in {report.seconds:.1f}s; {report.keyed} were already; "
                   f"{len(report.left)} left unkeyed.")
        for row in report.left:
            click.echo(f"  LEFT {row['bucket']}/{row['key']} version {row['version_id']}: {row['why']}")
    if report.left:
        sys.exit(1)
