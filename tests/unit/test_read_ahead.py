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
    else:                              # LMDB: nothing read ahead, the first lookup reads the index
        assert got == ["public-read", read_ahead.MISS, read_ahead.MISS, True, "public-read"]


def test_a_request_keeps_the_bucket_record_it_looked_up_until_it_changes_it(make_index):
    ix = make_index()
    ix.create_bucket("b", {"owner": "o"})
    buckets = BucketService(ix, None, None)

    async def request(acl):
        await read_ahead.read(ix, "b", "k")
        seen = [buckets.get("b").get("acl")]
        ix.put_bucket("b", {"owner": "o", "acl": acl})   # another gateway (or process) changed it
        seen.append(buckets.get("b").get("acl"))          # this request keeps what it saw
        read_ahead.forget_bucket("b")                     # ... until it changes the bucket itself
        seen.append(buckets.get("b").get("acl"))
        return seen

    assert asyncio.run(request("public-read")) == [None, None, "public-read"]
    assert asyncio.run(request("private")) == ["public-read", "public-read", "private"]   # the next request sees it
    assert buckets.get("b").get("acl") == "private"   # outside any request: the index, every time
