"""The `pocket` command: parses arguments and calls storage/. Nothing else lives here.

click gives us nested commands (`pocket index rebuild`), typed options and help text
for free, which is why it is used instead of argparse. One module per command family;
each imports what its commands run inside the command functions, so `pocket --help`
and every one-shot command load only what they use (tests/unit/test_cli_imports.py).
"""
from __future__ import annotations

import click

from . import config, disks, durability, index, lifecycle, migrate, serve
from .common import setup_logging


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Pocket: an erasure-coded, S3-compatible object store."""
    setup_logging(verbose)


for command in (serve.up, serve.gateway, serve.node, index.index, durability.scrub, durability.repair,
                durability.status, durability.upgrade, disks.disk, disks.rebalance, lifecycle.lifecycle,
                migrate.migrate, config.config_group):
    main.add_command(command)
