"""`pocket migrate`: move buckets out of S3 (storage/migrate/). Parses arguments, calls storage/.

Every subcommand takes the cluster options (`--data`/`--config`), `--json`, and the source
options; source settings given to `plan` or `enable` are remembered in the cluster's state, so
later subcommands may omit them. Exit status 0 only on success.
"""
from __future__ import annotations

import json

import click

from .common import load_config, with_cluster

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


def _not_built(name: str):
    raise click.ClickException(f"`pocket migrate {name}` is not built yet")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
@click.option("--inventory", default=None, help="S3 Inventory manifest (s3://bucket/path/manifest.json) instead of listing.")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False), help="Where to write the HTML report.")
@click.option("--bandwidth", default=None, help="Bandwidth for the time estimate, e.g. 1Gbit, 200MB.")
@click.option("--policy", default=None, help="Pocket storage policy for the disk estimate (default: the cluster's).")
def plan(data, config, buckets, inventory, report_path, bandwidth, policy, as_json, **kw) -> None:
    """Inventory source buckets into a local database and write an HTML report with cost and time estimates."""
    load_config(data, config)
    _not_built("plan")


@migrate.command()
@with_cluster
@click.argument("sql")
@click.option("--json", "as_json", is_flag=True, help="Rows as JSON.")
def query(data, config, sql, as_json) -> None:
    """Run SQL against the inventory database that `plan` wrote."""
    load_config(data, config)
    _not_built("query")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
def enable(data, config, buckets, as_json, **kw) -> None:
    """Create the Pocket bucket (with the source's configuration) and start dual writes."""
    load_config(data, config)
    _not_built("enable")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
@click.option("--concurrency", default=16, show_default=True, help="Objects copied at once.")
@click.option("--rate", default=None, help="Bandwidth limit, e.g. 100MB (per process).")
def copy(data, config, buckets, concurrency, rate, as_json, **kw) -> None:
    """Backfill: copy every object (and version) the source has that Pocket lacks, faithfully; resumable."""
    load_config(data, config)
    _not_built("copy")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
@click.option("--deep", is_flag=True, help="Read both sides fully and compare digests.")
@click.option("--sample", default=None, type=float, help="Re-read this percentage of objects deeply (0-100).")
@click.option("--fix", is_flag=True, help="Re-copy what is missing or different.")
def verify(data, config, buckets, deep, sample, fix, as_json, **kw) -> None:
    """Compare every object between the source and Pocket; mismatches block cutover."""
    load_config(data, config)
    _not_built("verify")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
def cutover(data, config, buckets, as_json, **kw) -> None:
    """Make Pocket authoritative (refused unless the last verify was clean and nothing since is unverified)."""
    load_config(data, config)
    _not_built("cutover")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
def rollback(data, config, buckets, as_json, **kw) -> None:
    """Return to S3-authoritative, losing no write (Pocket keeps mirroring writes to the source until detach)."""
    load_config(data, config)
    _not_built("rollback")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1, required=True)
def detach(data, config, buckets, as_json, **kw) -> None:
    """Stop mirroring writes to the source; the source is left untouched (Pocket never deletes source data)."""
    load_config(data, config)
    _not_built("detach")


@migrate.command()
@with_source
@click.argument("buckets", nargs=-1)
def status(data, config, buckets, as_json, **kw) -> None:
    """Each migrating bucket's state, counts, bytes, rate, ETA and last verify."""
    load_config(data, config)
    _not_built("status")
