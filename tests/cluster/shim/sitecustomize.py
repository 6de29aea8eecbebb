"""Test-only, loaded by Python at start-up when this folder is on a node's PYTHONPATH:
a journal of what the process has made durable, so a test can cut its power.

With POCKET_TEST_SYNC_JOURNAL set, every os.fsync / os.fdatasync appends one JSON line
to that file once the real call has returned: for a regular file its inode and the size
the sync covered, for a directory the entries (name -> inode) it held before the sync.
tests/cluster/power_cut.py then rebuilds a disk as a power loss would leave it: files
cut to what was synced, directory entries that no synced directory listing holds gone.
Lines are written before the call returns, so whatever a node acknowledged after a sync
is in the journal even if the process is killed the next instant. They are written when
each sync returns, not in the order the listings were taken: two threads syncing one
folder can journal the newer listing first, so power_cut.py merges every listing."""
import json
import os
import stat

_journal = os.environ.get("POCKET_TEST_SYNC_JOURNAL")

if _journal:
    _out = os.open(_journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _fsync, _fdatasync = os.fsync, os.fdatasync

    def _synced(real):
        def sync(fd):
            fd = fd if isinstance(fd, int) else fd.fileno()
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                path = os.readlink(f"/proc/self/fd/{fd}")
                line = {"dir": path, "entries": {e.name: e.inode() for e in os.scandir(path)}}
            else:
                line = {"ino": st.st_ino, "size": st.st_size}
            real(fd)
            os.write(_out, (json.dumps(line) + "\n").encode())
        return sync

    os.fsync, os.fdatasync = _synced(_fsync), _synced(_fdatasync)
