"""The power-loss model itself (power_cut.py), on a plain folder: if it kept what a real
power loss drops, test_power_loss would pass with a store that never syncs."""
import json
import os
import random

from . import power_cut


def _sync_file(journal, path):
    st = os.stat(path)
    with open(journal, "a") as f:
        f.write(json.dumps({"ino": st.st_ino, "size": st.st_size}) + "\n")


def _sync_dir(journal, folder):
    with open(journal, "a") as f:
        f.write(json.dumps({"dir": os.path.realpath(folder),
                            "entries": {e.name: e.inode() for e in os.scandir(folder)}}) + "\n")


def test_only_synced_entries_and_bytes_survive(tmp_path):
    root, journal = tmp_path / "disk", str(tmp_path / "syncs")
    (root / "old").mkdir(parents=True)
    (root / "old" / "kept").write_bytes(b"k" * 100)
    before = power_cut.snapshot(str(root), journal)          # durable from here

    (root / "old" / "synced").write_bytes(b"s" * 50)          # file and entry synced, then more bytes
    _sync_file(journal, root / "old" / "synced")
    _sync_dir(journal, root / "old")
    with open(root / "old" / "synced", "ab") as f:
        f.write(b"unsynced tail")
    (root / "new").mkdir()                                    # a folder whose parent was never synced
    (root / "new" / "file").write_bytes(b"y" * 10)
    _sync_file(journal, root / "new" / "file")
    _sync_dir(journal, root / "new")
    (root / "old" / "empty").write_bytes(b"z" * 20)           # entry synced, data never
    _sync_dir(journal, root / "old")
    (root / "old" / "no-dir-sync").write_bytes(b"x")          # data synced, entry never
    _sync_file(journal, root / "old" / "no-dir-sync")
    with open(journal, "a") as f:
        f.write('{"ino": 1, "si')                             # a sync cut short: ignored

    dropped = power_cut.cut_power(str(root), journal, before)
    assert sorted(os.listdir(root)) == ["old"]
    assert sorted(os.listdir(root / "old")) == ["empty", "kept", "synced"]
    assert (root / "old" / "kept").read_bytes() == b"k" * 100
    assert (root / "old" / "synced").read_bytes() == b"s" * 50
    assert (root / "old" / "empty").read_bytes() == b""
    assert dropped["entries"] == 2 and dropped["bytes"] == len(b"unsynced tail") + 20


def test_a_later_listing_journaled_first_does_not_hide_what_it_covered(tmp_path):
    """Two threads sync one folder at once: each lists it, then syncs, then journals, so
    the journal can hold the newer listing before the older one. Whatever either listing
    held was made durable by its sync; the older line coming last must not drop the entry
    only the newer one saw (test_power_loss lost whole `archives/xx/` folders this way)."""
    root, journal = tmp_path / "disk", str(tmp_path / "syncs")
    (root / "archives").mkdir(parents=True)
    before = power_cut.snapshot(str(root), journal)
    a1, c1 = random.Random(1).randbytes(64), random.Random(2).randbytes(64)
    (root / "archives" / "ab").mkdir()
    (root / "archives" / "ab" / "a1").write_bytes(a1)
    _sync_file(journal, root / "archives" / "ab" / "a1")
    _sync_dir(journal, root / "archives" / "ab")
    older = {e.name: e.inode() for e in os.scandir(root / "archives")}      # thread 1 lists: ab
    (root / "archives" / "cd").mkdir()                                      # thread 2 makes cd,
    (root / "archives" / "cd" / "c1").write_bytes(c1)
    _sync_file(journal, root / "archives" / "cd" / "c1")
    _sync_dir(journal, root / "archives" / "cd")
    _sync_dir(journal, root / "archives")                                   # lists ab, cd; journals first
    with open(journal, "a") as f:                                           # thread 1's sync returns last
        f.write(json.dumps({"dir": os.path.realpath(root / "archives"), "entries": older}) + "\n")

    dropped = power_cut.cut_power(str(root), journal, before)
    assert sorted(os.listdir(root / "archives")) == ["ab", "cd"], dropped
    assert (root / "archives" / "ab" / "a1").read_bytes() == a1
    assert (root / "archives" / "cd" / "c1").read_bytes() == c1
    assert dropped["entries"] == 0
