"""Request ids: S3's 16 hex digits, distinct, also between processes forked from one gateway."""
from __future__ import annotations

import os
import re

from storage.s3.request import new_request_id


def test_request_ids_are_16_hex_digits_and_distinct():
    ids = [new_request_id() for _ in range(20000)]
    assert all(re.fullmatch(r"[0-9A-F]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_forked_workers_do_not_repeat_each_others_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: a worker forked from the gateway
        os.close(read)
        os.write(write, " ".join(new_request_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    mine = {new_request_id() for _ in range(100)}
    with os.fdopen(read) as f:
        theirs = set(f.read().split())
    os.waitpid(pid, 0)
    assert len(theirs) == 100 and not mine & theirs
