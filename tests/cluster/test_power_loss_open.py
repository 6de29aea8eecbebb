"""Power loss right after a disk is opened: the folders `DiskStore.open` makes (a disk from
before packs existed has no `packs/`) hold acknowledged writes at once, so their entries in
the disk folder must be synced too, or the cut takes the folder and every pack in it.

One process with the fsync journal (power_cut.py) opens the disk and stores a record (packed:
acknowledged once its pack is fsync'd); then the power goes and the disk is opened again."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys

from storage.node.store import DiskStore

from . import power_cut
from .harness import CLUSTER_SECRET, REPO

_PUT = """
import asyncio, sys
from storage import integrity
from storage.node.store import DiskStore

async def main():
    integrity.use_secret(sys.argv[4])   # the key the test reads the packs with (harness.py)
    store = DiskStore("d1", sys.argv[1]).open()
    try:
        await store.put_record(sys.argv[2], bytes.fromhex(sys.argv[3]))
    finally:
        store.close()

asyncio.run(main())
"""


def _records(root: str) -> dict[str, bytes]:
    store = DiskStore("d1", root).open()
    try:
        return dict(store.list_records())
    finally:
        store.close()


def test_a_record_acknowledged_into_a_packs_folder_made_at_open_survives(tmp_path):
    root, journal = str(tmp_path / "d1"), str(tmp_path / "syncs")
    DiskStore("d1", root).open().close()
    shutil.rmtree(os.path.join(root, "packs"))          # a disk written before packs existed
    before = power_cut.snapshot(root, journal)

    rec_id, data = "ab" * 16, random.Random(11).randbytes(300)
    env = {**os.environ, **power_cut.env(journal)}
    subprocess.run([sys.executable, "-c", _PUT, root, rec_id, data.hex(), CLUSTER_SECRET], cwd=REPO, env=env, check=True,
                   timeout=120)
    dropped = power_cut.cut_power(root, journal, before)

    assert _records(root) == {rec_id: data}, f"acknowledged record lost; dropped at power loss: {dropped}"
