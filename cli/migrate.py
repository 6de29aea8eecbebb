"""`pocket migrate`: move buckets out of S3 (storage/migrate/). Parses arguments, calls storage/.

Every subcommand takes the cluster options (`--data`/`--config`), `--json`, and the source
options; source settings given to `plan` or `enable` are remembered in the cluster's state, so
later subcommands may omit them. Exit status 0 only on success.
"""
from __future__ import annotations

import json
import sys

import click

from .common import load_config, run_tool, with_cluster


def source_errors() -> tuple:
    """What the source can answer that ends a command: said in one line, no traceback.
    (Imported when a command runs, so `pocket --help` loads neither botocore nor storage.)"""
    from botocore.exceptions import BotoCoreError, ClientError

    from storage.migrate.state import MigrationError
    return (MigrationError, ClientError, BotoCoreError)

_source_options = [
    click.option("--source-endpoint", default=None, help="S3 endpoint URL of the source (default: AWS itself)."),
    click.option("--source-region", default=None, help="Region of the source (default: as boto3 resolves it)."),
    click.option("--source-profile", default=None, help="AWS profile for the source's credentials."),
    click.option("--source-addressing", type=click.Choice(["auto", "path", "virtual"]), default=None,
                 help="Bucket addressing style at the source."),
    click.option("--source-access-key", default=None, envvar="POCKET_SOURCE_ACCESS_KEY",
                 help="Explicit source access key (stored mode 0600 beside the index; default: the AWS chain)."),
    click.option("--source-secret-key", default=None, envvar="POCKET_SOURCE_SECRET_KEY",
                 help="Explicit source secret key (never logged)."),
    click.option("--target", default=None, help="Pocket bucket name (default: the source bucket's name)."),
    click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report."),
]


def with_source(fn):
    for opt in reversed(_source_options):
        fn = opt(fn)
    return with_cluster(fn)


def source_args(kw: dict) -> dict:
    """The source options as given on this command line (None where omitted)."""
    return {k: kw.pop(k) for k in ("source_endpoint", "source_region", "source_profile", "source_addressing",
                                   "source_access_key", "source_secret_key", "target")}


def emit(report: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(report, indent=2, default=str) if as_json else text)


@click.group()
def migrate() -> None:
    """Move buckets out of S3: plan, enable (dual writes), copy, verify, cutover, rollback, detach."""


def _run_each(data, config, buckets, as_json, kw, fn, verb: str) -> None:
    """Run a storage/migrate/commands.py step for each bucket; exit 1 if any was refused."""
    cfg = load_config(data, config)
    given = source_args(kw)
    rows = run_tool(cfg, lambda tc: fn(cfg, tc, list(buckets), given))
    lines = []
    for r in rows:
        if not r["ok"]:
            lines.append(f"{r['bucket']}: REFUSED: {r['error']}")
            continue
        if r.get("changed") is False:
            lines.append(f"{r['bucket']}: {r['note']}")
            continue
        lines.append(f"{r['bucket']}: {verb}, now {r['state']}")
        lines += [f"  carried: {c}" for c in r.get("carried", [])]
        lines += [f"  NOT carried: {c}" for c in r.get("not_carried", [])]
        if r.get("dirty_rechecked"):
            lines.append(f"  {r['dirty_rechecked']} keys written since the last verify re-checked equal")
        if r.get("owed_to_source_dropped"):
            lines.append(f"  {r['owed_to_source_dropped']} writes still owed to the source were dropped")
    emit({"buckets": rows}, as_json, "\n".join(lines))
    if not all(r["ok"] for r in rows):
        sys.exit(1)


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
@click.option("--inventory", default=None, help="S3 Inventory manifest (s3://bucket/path/manifest.json) instead of listing.")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False), help="Where to write the HTML report.")
@click.option("--bandwidth", default=None, help="Bandwidth for the time estimate, e.g. 1Gbit, 200MB.")
@click.option("--policy", default=None, help="Pocket storage policy for the disk estimate (default: the cluster's).")
@click.option("--prices", "prices_path", default=None, type=click.Path(dir_okay=False, exists=True),
              help="JSON file overriding the default AWS list prices (see storage/migrate/estimate.py).")
@click.option("--order", default=None, help="Your order of the buckets, comma-separated (default: suggested).")
def plan(data, config, buckets, inventory, report_path, bandwidth, policy, prices_path, order, as_json, **kw) -> None:
    """Inventory source buckets into a local database and write an HTML report with cost and time estimates."""
    cfg = load_config(data, config)
    from storage.migrate import plan as plan_mod
    from storage.migrate.report import duration
    from storage.tools.status import size
    try:
        report = plan_mod.run(cfg, buckets, source_args(kw), inventory, report_path, bandwidth, prices_path,
                              order.split(",") if order else None, policy)
    except (ValueError, OSError, *source_errors()) as e:
        raise click.ClickException(f"{e}") from None
    lines = [f"{s['bucket']}: {s['objects']:,} objects, {size(s['version_bytes'])} with versions, "
             f"{duration(s['transfer_seconds'])} at {size(report['bandwidth_bytes_per_second'])}/s, "
             f"move ${s['move_cost']:,.2f}, ends ${s['monthly_bill']:,.2f}/month"
             + (f", {s['needs_restore']} need a restore first" if s["needs_restore"] else "")
             for s in report["buckets"]]
    lines += [f"Order: {', '.join(report['order'])}", f"Report: {report['report']}"]
    emit(report, as_json, "\n".join(lines))


@migrate.command()
@with_cluster
@click.argument("sql")
@click.option("--json", "as_json", is_flag=True, help="Rows as JSON.")
def query(data, config, sql, as_json) -> None:
    """Run read-only SQL against the inventory database that `plan` wrote (tables: buckets, objects, plan_order)."""
    import sqlite3

    from storage.migrate import inventory
    cfg = load_config(data, config)
    try:
        db = inventory.connect(cfg.data, create=False)
        try:
            columns, rows = inventory.query(db, sql)
        finally:
            db.close()
    except (sqlite3.Error, FileNotFoundError) as e:
        raise click.ClickException(f"{e}") from None
    if as_json:
        click.echo(json.dumps([dict(zip(columns, r)) for r in rows], indent=2, default=str))
    else:
        click.echo("\t".join(columns))
        for r in rows:
            click.echo("\t".join("" if v is None else str(v) for v in r))


def _step(name: str, verb: str, doc: str):
    """enable, cutover, rollback and detach differ only in the storage/migrate/commands.py
    function they run per bucket and the words they report; one shape keeps their options equal."""
    @migrate.command(name=name, help=doc)
    @with_source
    @click.argument("buckets", nargs=-1, required=True)
    def step(data, config, buckets, as_json, **kw) -> None:
        from storage.migrate import commands
        _run_each(data, config, buckets, as_json, kw, getattr(commands, name), verb)
    return step


enable = _step("enable", "dual writes on",
               "Create the Pocket bucket (with the source's configuration) and start dual writes.")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
@click.option("--concurrency", default=128, show_default=True,
              help="Objects copied at once, by all workers. Small objects are latency-bound (each waits "
                   "for fsync'd commits), so many in flight pay; at most 8 bodies over 1 MiB stream at "
                   "once per process whatever this is.")
@click.option("--workers", default=None, type=click.IntRange(1, 64),
              help="Copy processes on this machine (default: one per core, at most 4; half that "
                   "when the running gateway stores the small objects and the buckets hold small ones).")
@click.option("--rate", default=None, help="Bandwidth limit, e.g. 100MB (for all workers).")
@click.option("--list", "list_source", is_flag=True,
              help="List the source for the keys to copy even when `plan --inventory` read an S3 Inventory "
                   "report (by default the report's keys are copied without a LIST request; keys created "
                   "since the report are found by `verify` and copied by `verify --fix` or a `copy --list`).")
def copy(data, config, buckets, concurrency, workers, rate, list_source, as_json, **kw) -> None:
    """Backfill: copy every object (and version) the source has that Pocket lacks, faithfully; resumable."""
    cfg = load_config(data, config)
    from storage.migrate import workers as copy_workers
    from storage.migrate.estimate import parse_bandwidth
    try:
        limit = parse_bandwidth(rate) if rate else 0.0
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--rate") from None
    args = {**source_args(kw), "list_source": list_source}
    progress = _CopyProgress()
    try:
        report = copy_workers.copy(cfg, run_tool, buckets, args, concurrency, limit, workers, progress.show)
    except source_errors() as e:
        raise click.ClickException(f"{e}") from None
    progress.close()
    from storage.tools.status import size
    lines = [f"{b['bucket']}: copied {b['copied']:,} ({size(b['bytes'])}), skipped {b['skipped']:,} already there, "
             f"{b['errors']} errors, {b['changed_during_copy']} changed at the source meanwhile, "
             f"{size(b['bytes_per_second'])}/s" + _via_gateway(b) + _copy_again(b) for b in report["buckets"]]
    emit(report, as_json, "\n".join(lines))
    if not report["ok"]:
        raise SystemExit(1)


def _via_gateway(b: dict) -> str:
    n = b.get("written_via_gateway", 0)
    return f", {n:,} stored by the running gateway" if n else ""


def _copy_again(b: dict) -> str:
    """What an operator does next when this pass could not finish the bucket."""
    if b["errors"] or b["changed_during_copy"]:
        return ("\n  the bucket stays in dual-write (not backfilled): run `pocket migrate copy` again "
                "until a pass ends with 0 errors and 0 changed")
    return ""


class _CopyProgress:
    """One line on stderr, rewritten in place: objects, bytes, rate, ETA."""

    def __init__(self):
        self.shown = False

    def show(self, tally) -> None:
        import sys
        import time

        from storage.migrate.report import duration
        from storage.tools.status import size
        rate = tally.bytes / max(time.monotonic() - tally.started, 1e-6)
        left = tally.eta()
        eta = "?" if left is None else duration(left)
        sys.stderr.write(f"\r{tally.bucket}: {tally.copied:,} copied, {tally.skipped:,} skipped, "
                         f"{size(tally.bytes)} at {size(rate)}/s, ETA {eta}   ")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            click.echo("", err=True)


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
@click.option("--quick", is_flag=True, help="Only one listing of each side (size, ETag, Last-Modified), HEADs "
              "only for keys written since their last verify; cutover needs a full verify.")
@click.option("--attrs", is_flag=True, hidden=True)   # the default since session 8; still accepted
@click.option("--deep", is_flag=True, help="Also read both sides fully and compare them byte for byte.")
@click.option("--sample", default=None, type=float, help="Re-read this percentage of objects deeply (0-100).")
@click.option("--fix", is_flag=True, help="Re-copy what is missing or different.")
@click.option("--concurrency", default=16, show_default=True, help="Versions compared at once.")
@click.option("--workers", default=None, type=click.IntRange(1, 64), help="Processes comparing at once (default: "
              "one per core, at most 4, when there is enough to compare).")
def verify(data, config, buckets, quick, attrs, deep, sample, fix, concurrency, workers, as_json, **kw) -> None:
    """Compare every object between the source and Pocket; mismatches block cutover.

    By default every version's size, ETag, Last-Modified, headers, metadata, tags and
    checksums (one listing of each side and a HEAD of every version); --quick compares
    the listings only (HEADs just for keys written since their last verify); --deep also
    reads every byte."""
    cfg = load_config(data, config)
    if sample is not None and not 0 < sample <= 100:
        raise click.BadParameter("a percentage above 0, at most 100", param_hint="--sample")
    args = source_args(kw)
    if quick and (attrs or deep or sample):
        raise click.UsageError("--quick compares listings only; it does not go with --attrs, --deep or --sample")
    tier = {"attrs": not quick, "deep": deep, "sample": sample, "fix": fix, "concurrency": concurrency}
    from storage.migrate import verify_workers
    try:
        report = verify_workers.run(cfg, run_tool, buckets, args, workers=workers, **tier)
    except source_errors() as e:
        raise click.ClickException(f"{e}") from None
    lines = []
    for b in report["buckets"]:
        lines.append(f"{b['bucket']}: {b['checked']:,} versions checked ({b['tier']}; {b['headed']:,} HEADed, "
                     f"{b['deep_read']:,} read in full), "
                     f"{b['missing']} missing, {b['mismatched']} different, {b['fixed']} fixed: "
                     f"{'clean' if b['clean'] else 'NOT clean (cutover is blocked; run with --fix)'}")
        lines += [f"  {f['problem']:10} {f['key']} version {f['version_id']}: {f['why']}"
                  + (f" (fix {f['fix']})" if f.get("fix") else "") for f in b["findings"][:50]]
    emit(report, as_json, "\n".join(lines))
    if not report["clean"]:
        raise SystemExit(1)


cutover = _step("cutover", "cut over",
                "Make Pocket authoritative (refused unless the last verify was clean and nothing since is unverified).")
rollback = _step("rollback", "rolled back",
                 "Return to S3-authoritative, losing no write (Pocket keeps mirroring writes to the source until detach).")
detach = _step("detach", "detached",
               "Stop mirroring writes to the source; the source is left untouched (Pocket never deletes source data).")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1)
def status(data, config, buckets, as_json, **kw) -> None:
    """Each migrating bucket's state, counts, bytes, rate, ETA and last verify."""
    from storage.index.index import open_index
    from storage.migrate import commands
    cfg = load_config(data, config)
    index = open_index(cfg)
    try:
        rows = commands.status(index, list(buckets))
    finally:
        index.close()
    emit({"buckets": rows}, as_json, commands.render_status(rows))
