"""Temp files written beside a disk's owner (storage/node/beside_temp.py) outlive a killed
writer only until the next process attaches to the folder.

Real processes: a writer that opens a temp file beside the owner and is then SIGKILLed, as a
`pocket repair` killed mid-archive is, and one that is still writing. Attaching again must
remove the first's file and keep the second's, and an archive a writer publishes is untouched.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

from storage.node.store import DiskStore
from tests.unit.test_store import VID, chunked, make_archive

WRITER = textwrap.dedent("""
    import os, sys, time
    from storage.node import beside_temp
    path, fd = beside_temp.create(sys.argv[1], sys.argv[2])
    os.write(fd, b"half an archive")
    print(path, flush=True)
    time.sleep(600)
""")


def _writer(tmp_folder: str, name: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, tmp_folder, name], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_a_killed_writers_temp_file_is_removed_by_the_next_to_attach(tmp_path):
    owner = DiskStore("d1", str(tmp_path / "d1")).open()
    tmp = owner.tmp_folder
    dead, dead_path = _writer(tmp, "v1.0")
    live, live_path = _writer(tmp, "v2.0")
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        assert os.path.exists(dead_path) and os.path.exists(live_path)
        DiskStore("d1", str(tmp_path / "d1")).beside_owner()          # a one-shot command attaching
        assert not os.path.exists(dead_path), "a killed writer's temp file was left behind"
        assert os.path.exists(live_path), "a running writer's temp file was removed"
        assert owner.drop_stale_temp() == 0                           # the owner's sweep keeps it too
        assert os.path.exists(live_path)
    finally:
        live.kill()
        live.wait(10)
        owner.close()
    assert owner.drop_stale_temp() == 1 and os.listdir(tmp) == []     # its writer gone: the owner's sweep


def test_an_archive_written_beside_the_owner_is_published_and_no_temp_file_stays(tmp_path):
    owner = DiskStore("d1", str(tmp_path / "d1")).open()
    beside = DiskStore("d1", str(tmp_path / "d1")).beside_owner()
    archive, _ = make_archive(index=1, size=3 << 20, segment_size=1 << 20, seed=5)
    try:
        assert asyncio.run(beside.put_archive(f"{VID}.1", chunked(archive, 300_001))) == len(archive)
        assert os.listdir(owner.tmp_folder) == []
        assert asyncio.run(owner.read(f"{VID}.1", 0, 1 << 62)) == archive
    finally:
        owner.close()
