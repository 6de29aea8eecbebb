"""`pocket disk ...` and `pocket rebalance`: thin commands over storage/tools/disks.py.

`restore` exits 1 when stale archives could not be deleted (the disk stays out of service).

Exit status: 0 when everything moved, 1 when something could not be moved or rebuilt
(run the command again once the cause is fixed: it resumes), 2 when the request was
refused (bad disk id, nowhere to move to); a refused request changes nothing.
"""
from __future__ import annotations

import json
import sys

import click

from .common import Progress, load_config, run_tool, with_cluster


def _print_disks(rows: list[dict]) -> None:
    from storage.tools.status import size as _size
    click.echo(f"{'DISK':<10} {'NODE':<8} {'ZONE':<8} {'STATE':<9} {'SLOTS':>5} {'USED':>10} {'FREE':>10}  MOVES")
    for r in rows:
        moves = f"{r['moves_off']} off, {r['moves_onto']} onto" if r["moves_off"] or r["moves_onto"] else ""
        click.echo(f"{r['id']:<10} {r['node']:<8} {r['zone']:<8} {r['state']:<9} {r['slots']:>5} "
                   f"{_size(r['used']):>10} {_size(r['free']):>10}  {moves}")


def _act(data, config, as_json: bool, action: str, disk=None, new=None, rate=None, dry_run=False) -> None:
    cfg = load_config(data, config)
    progress = Progress({"fail": "Rebuilding", "drain": "Draining", "replace": "Replacing",
                          "rebalance": "Rebalancing"}[action])

    async def work(tc):
        from storage.tools import disks as disk_tool
        from storage.disks.actions import DiskError
        try:
            out = await disk_tool.start(tc, action, disk, new, dry_run)
        except DiskError as e:
            return e
        if dry_run:
            return out
        progress.start(disk_tool.work_size(tc, out) + tc.queue.length())
        try:
            return await disk_tool.finish(tc, out, cfg.repair.move_rate if rate is None else rate, progress.step)
        finally:
            progress.close()
    out = run_tool(cfg, work)
    if isinstance(out, Exception):
        _refused(out, action, as_json)
    if as_json:
        click.echo(json.dumps(out.as_dict(), indent=2))
    else:
        _summary(out, dry_run)
    if not out.ok:
        sys.exit(1)


def _refused(error: Exception, action: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"action": action, "error": str(error), "ok": False}, indent=2))
    else:
        click.echo(f"Error: {error}", err=True)
    sys.exit(2)


def _summary(out, dry_run: bool) -> None:
    from storage.tools.status import size as _size
    if dry_run:
        click.echo(f"Would move {len(out.planned)} volume slots "
                   f"({_size(sum(m.get('bytes', 0) for m in out.planned))}):")
        for m in out.planned:
            click.echo(f"  {m['volume']}[{m['slot']}] {m['from']} -> {m['to']} ({_size(m.get('bytes'))})")
        return
    mv = out.moves
    click.echo(f"{len(mv.get('done', []))} volume slots moved in {mv.get('seconds', 0):.1f}s: {mv.get('copied', 0)} "
               f"archives copied ({_size(mv.get('bytes_copied', 0))}), {mv.get('rebuilt', 0)} rebuilt, "
               f"{mv.get('queued', 0)} versions queued for rebuild"
               + (f", {out.repair.get('fragments', 0)} fragments rebuilt" if out.repair else "") + ".")
    for m in mv.get("done", []):
        click.echo(f"  {m['volume']}[{m['slot']}] {m['from']} -> {m['to']} ({m['mode']}, {m['versions']} versions)")
    for m in mv.get("failed", []):
        click.echo(f"  FAILED {m['volume']}[{m['slot']}] {m['from']} -> {m['to']}: {m['error']}")
    for m in out.unplaced:
        click.echo(f"  NOWHERE TO GO {m['volume']}[{m['slot']}]: {m['error']}")
    if out.left:
        click.echo(f"  {len(out.left)} fragments are still to be rebuilt onto their new disks; "
                   "`pocket repair` (or the running gateway) retries them")
    for d in out.drained:
        click.echo(f"Disk {d} is drained: it holds nothing Pocket needs; remove it from the config.")
    _print_disks(out.disks)


@click.group()
def disk() -> None:
    """Disks: list them, declare one failed, drain one, replace one, restore one."""


@disk.command("list")
@with_cluster
@click.option("--json", "as_json", is_flag=True, help="Print the disks as JSON.")
def disk_list(data, config, as_json: bool) -> None:
    """Every disk with its state (up, down, failed, draining, drained), slots, usage and moves."""
    cfg = load_config(data, config)

    async def work(tc):
        from storage.disks.actions import disk_rows
        return disk_rows(tc.cluster, tc.index)
    rows = run_tool(cfg, work)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_disks(rows)


@disk.command("fail")
@with_cluster
@click.argument("disk_id")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def disk_fail(data, config, disk_id: str, as_json: bool) -> None:
    """Declare DISK failed now: rebuild its fragments onto other disks."""
    _act(data, config, as_json, "fail", disk_id)


@disk.command("drain")
@with_cluster
@click.argument("disk_id")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--rate", type=int, default=None, help="Bytes per second to copy (default: repair.move_rate).")
def disk_drain(data, config, disk_id: str, as_json: bool, rate) -> None:
    """Move every fragment off DISK; afterwards it can be removed from the config."""
    _act(data, config, as_json, "drain", disk_id, rate=rate)


@disk.command("replace")
@with_cluster
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--rate", type=int, default=None, help="Bytes per second to copy (default: repair.move_rate).")
def disk_replace(data, config, old: str, new: str, as_json: bool, rate) -> None:
    """Give all of OLD's volume slots to NEW (a new disk already in the config)."""
    _act(data, config, as_json, "replace", old, new, rate=rate)


@disk.command("restore")
@with_cluster
@click.argument("disk_id")
@click.option("--wipe", is_flag=True, help="Delete every archive on it first, even live ones of its slots.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def disk_restore(data, config, disk_id: str, wipe: bool, as_json: bool) -> None:
    """Return a failed or drained DISK to service, its stale archives removed; then `pocket rebalance`."""
    cfg = load_config(data, config)

    async def work(tc):
        from storage.disks.actions import DiskError
        from storage.tools import disks as disk_tool
        try:
            return await disk_tool.restore(tc, disk_id, wipe)
        except DiskError as e:
            return e
    out = run_tool(cfg, work)
    if isinstance(out, Exception):
        _refused(out, "restore", as_json)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"Disk {disk_id} was {out['was']}: {out['archives']} archives on it, {out['removed']} stale "
                   f"{'(wiped) ' if out['wiped'] else ''}removed, {len(out['kept'])} kept for its slots, "
                   f"{out['queued']} versions queued for repair.")
        for row in out["left"]:
            click.echo(f"  NOT REMOVED {row['archive']}: {row['why']}")
        if out["ok"]:
            click.echo(f"{disk_id} is in service again; `pocket rebalance` moves data onto it.")
        _print_disks(out["disks"])
    if not out["ok"]:
        sys.exit(1)


@click.command()
@with_cluster
@click.option("--rate", type=int, default=None, help="Bytes per second to copy (default: repair.move_rate).")
@click.option("--dry-run", is_flag=True, help="Print the moves without making them.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def rebalance(data, config, rate, dry_run: bool, as_json: bool) -> None:
    """Move volume slots from the fullest disks to the emptiest (e.g. new ones)."""
    _act(data, config, as_json, "rebalance", rate=rate, dry_run=dry_run)
