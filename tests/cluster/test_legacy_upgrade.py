"""`pocket upgrade` on disks written before keyed checksums (tests/fixtures/legacy-v1):
the one-shot commands rebuild the index from them, rewrite every object keyed, and a
second run finds nothing left to do."""
import json
import os
import shutil

from storage.node import packformat

from . import forkserver
from .harness import ACCESS_KEY, CLUSTER_SECRET, SECRET_KEY

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "legacy-v1")


def _pocket(config: str, *args, ok=(0,)) -> dict:
    out = forkserver.run([*args, "--json", "--config", config], timeout=120)
    assert out.returncode in ok, f"pocket {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout)


def test_pocket_upgrade_rewrites_legacy_disks_keyed(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "disks")
    config = tmp_path / "pocket.toml"
    disks = ", ".join(f'{{ id = "d{i}", path = "disks/d{i}" }}' for i in range(6))
    config.write_text(f'data = "."\ncluster_secret = "{CLUSTER_SECRET}"\n[storage]\nsegment_size = 16384\n'
                      f'pack_threshold = 4096\n[[credentials]]\naccess_key = "{ACCESS_KEY}"\n'
                      f'secret_key = "{SECRET_KEY}"\n[[nodes]]\nid = "n1"\ndisks = [{disks}]\n')
    rebuilt = _pocket(str(config), "index", "rebuild")
    assert rebuilt["objects"] == 2 and rebuilt["unreadable"] == 0

    first = _pocket(str(config), "upgrade")
    assert (first["upgraded"], first["keyed"], first["left"]) == (2, 0, [])
    again = _pocket(str(config), "upgrade")
    assert (again["upgraded"], again["keyed"], again["left"]) == (0, 2, [])
    scrub = _pocket(str(config), "scrub", ok=(0,))
    assert scrub["corrupt"] == [] and scrub["missing"] == []
    # the replica object lived in version 1 packs: its keyed copies went to new packs
    versions = {packformat.scan_pack(os.path.join(tmp_path, "disks", d, "packs", f)).fmt
                for d in os.listdir(tmp_path / "disks") if d.startswith("d")
                for f in packformat.pack_files(os.path.join(tmp_path, "disks", d, "packs"))}
    assert packformat.PACK_VERSION in versions
