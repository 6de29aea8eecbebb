"""storage/objects/read_ahead.py: a request's bucket and object records, read off the loop before its handler."""
from __future__ import annotations

import asyncio

from storage.objects import read_ahead
from storage.objects.buckets import BucketService


def test_a_request_is_served_its_records_read_ahead_until_it_changes_them(make_index, index_backend):
    ix = make_index()
    ix.create_bucket("b", {"owner": "o"})
    ix.put_object("b", "k", {"v": 1})
    buckets = BucketService(ix, None, None)

    async def request():
        await read_ahead.read(ix, "b", "k")
        ix.put_bucket("b", {"owner": "o", "acl": "public-read"})   # written after the read ahead
        ix.put_object("b", "k", {"v": 2})
        seen = [buckets.get("b").get("acl")]
        seen.append(read_ahead.take_object("b", "k"))
        seen.append(read_ahead.take_object("b", "k"))                 # once only
        seen.append(await asyncio.create_task(_in_child()))          # a task the request starts: not served
        read_ahead.forget_bucket("b")                                 # the request changed the bucket
        seen.append(buckets.get("b").get("acl"))
        return seen

    async def _in_child():
        return read_ahead.bucket("b") is read_ahead.MISS

    got = asyncio.run(request())
    if index_backend == "postgres":   # the network may wait: read ahead, served from there
        assert got == [None, {"v": 1}, read_ahead.MISS, True, "public-read"]
    else:                              # LMDB: nothing read ahead, every lookup reads the index
        assert got == ["public-read", read_ahead.MISS, read_ahead.MISS, True, "public-read"]
