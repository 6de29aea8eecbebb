"""`pocket config ...`: `pocket config check`, a thin command over storage/config_check.py.

Exit status: 0 when the config has no problem, 1 when it has (one line each)."""
from __future__ import annotations

import sys

import click


@click.group("config")
def config_group() -> None:
    """Inspect a pocket.toml."""


@config_group.command("check")
@click.option("--config", "config", required=True, type=click.Path(dir_okay=False),
              help="The pocket.toml to check.")
@click.option("--node", "node", default=None,
              help="Also check this node's disk folders (run it on that node's server).")
@click.option("--reach", is_flag=True, help="Also check that every node URL answers and shares the cluster secret.")
def check(config: str, node: str | None, reach: bool) -> None:
    """Check every key, value, disk folder, certificate (and node URL with --reach) offline."""
    from storage.config_check import check as run_check
    problems, notes = run_check(config, node=node, reach=reach)
    for line in problems:
        click.echo(f"problem: {line}")
    for line in notes:
        click.echo(f"note: {line}")
    if problems:
        click.echo(f"{config}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"{config}: OK")
