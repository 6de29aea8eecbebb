"""What every `pocket` command shares: finding the cluster, running async work, progress.

The command modules import this, never main.py, and main.py only puts them together,
so the CLI has no import circle. Even asyncio is imported where it runs: `pocket --help`
loads click and little else.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from storage.config import Config


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def load_config(data: str | None, config: str | None) -> Config:
    """The same `--data DIR` / `--config FILE` for every command; every command then
    checks and writes archives with the keys of this cluster's secret (integrity.py)."""
    from storage import config as config_mod
    from storage import integrity
    from storage.config import ConfigError
    try:
        if config:
            cfg = config_mod.load(config)
        else:
            path = os.path.join(data or "./pocket-data", "pocket.toml")
            if not os.path.exists(path):
                raise ConfigError(f"no cluster at {data or './pocket-data'}: {path} is missing "
                                  "(start one with `pocket up --data DIR`, or pass --config FILE)")
            cfg = config_mod.load(path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    integrity.use_secret(cfg.cluster_secret)
    return cfg


def run_until_signalled(main) -> None:
    import asyncio
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


cluster_options = [
    click.option("--data", "data", type=click.Path(file_okay=False), default=None,
                 help="Data folder of a `pocket up` cluster (default ./pocket-data)."),
    click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                 help="pocket.toml describing the cluster."),
]


def with_cluster(fn):
    for opt in reversed(cluster_options):
        fn = opt(fn)
    return fn


def run_tool(cfg, work, read_packs: bool = True, write_files: bool = False, lazy_packs: bool = False):
    """Run `work(tool_cluster)` against the cluster, running or stopped (storage/tools/cluster.py);
    `read_packs=False` for a command that never reads archives, `write_files=True` for one
    that writes archive files of this host's disks itself, `lazy_packs` for one that reads
    only the archives it is asked for (open_cluster)."""
    import asyncio

    async def main():
        from storage import gc_tuning
        from storage.executor import io_executor
        from storage.tools.cluster import open_cluster
        asyncio.get_running_loop().set_default_executor(io_executor())
        async with open_cluster(cfg, read_packs, write_files, lazy_packs) as tc:
            gc_tuning.tune(collect=False)
            return await work(tc)
    return asyncio.run(main())


class Progress:
    """A progress bar on stderr (stdout stays clean for --json), sized once the total is known."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def start(self, total: int) -> None:
        self.bar = click.progressbar(length=max(total, 1), label=self.label, file=sys.stderr,
                                     show_percent=True, show_pos=False)
        self.bar.__enter__()

    def step(self, n: int = 1) -> None:
        if self.bar:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar:
            self.bar.__exit__(None, None, None)
