"""The copy's presigned GETs answer exactly what botocore's get_object does.

A small S3-like server on 127.0.0.1 answers with the headers real servers send (metadata
keys in mixed case, non-ASCII values, repeated headers, gzip'd bytes, checksums, tags);
botocore and presigned_get read the same object and must agree on every field the copy
keeps. The server also checks that the presigned request carries its signed headers.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import random
import socket
import zlib

import boto3
import pytest
from aiohttp import web
from botocore.config import Config

from storage.migrate import presigned_get, source_body

BODY = gzip.compress(random.Random(7).randbytes(3000))
HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"), ("Content-Encoding", "gzip"),
    ("Cache-Control", "max-age=60"), ("Content-Disposition", 'attachment; filename="ä b.txt"'),
    ("Content-Language", "de"), ("Expires", "Thu, 01 Dec 2044 16:00:00 GMT"),
    ("ETag", '"0123456789abcdef0123456789abcdef"'), ("Last-Modified", "Wed, 02 Dec 2026 10:11:12 GMT"),
    ("X-Amz-Meta-Colour", "grün"), ("x-amz-meta-lower", "a"), ("X-Amz-Meta-Twice", "one"),
    ("X-Amz-Meta-Twice", "two"), ("x-amz-tagging-count", "2"), ("x-amz-version-id", "v-1"),
    ("x-amz-checksum-crc32", base64.b64encode(zlib.crc32(BODY).to_bytes(4, "big")).decode()),
    ("x-amz-checksum-sha256", base64.b64encode(hashlib.sha256(BODY).digest()).decode()),
    ("x-amz-server-side-encryption", "AES256"),
]
FIELDS = ("ContentType", "ContentEncoding", "CacheControl", "ContentDisposition", "ContentLanguage", "ETag",
          "LastModified", "Metadata", "TagCount", "VersionId", "ChecksumCRC32", "ChecksumSHA256",
          "ServerSideEncryption", "ContentLength")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _serve(seen: list):
    async def get(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        key = request.match_info["key"]
        if key == "changed":
            return web.Response(status=412, body=b"<Error><Code>PreconditionFailed</Code></Error>")
        if key == "archived":
            return web.Response(status=403, body=b"<Error><Code>InvalidObjectState</Code></Error>")
        if key == "cut" or (key == "flaky" and not request.headers.get("Range")):
            # the connection drops a hundred bytes into the body ("flaky": then answers ranges)
            r = web.StreamResponse(headers={"ETag": HEADERS[6][1]})
            r.content_length = len(BODY)
            await r.prepare(request)
            await r.write(BODY[:100])
            request.transport.close()
            return r
        if request.headers.get("Range"):
            first, last = map(int, request.headers["Range"].removeprefix("bytes=").split("-"))
            r = web.Response(status=206, body=BODY[first:last + 1],
                             headers={"Content-Range": f"bytes {first}-{last}/{len(BODY)}"})
            for name, value in HEADERS:
                if not name.lower().startswith("x-amz-checksum"):   # S3 sends none for a range
                    r.headers.add(name, value)
            return r
        r = web.Response(body=BODY)
        for name, value in HEADERS:
            r.headers.add(name, value)
        return r
    app = web.Application()
    app.router.add_get("/bkt/{key}", get)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def _client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="AK", aws_secret_access_key="SK",
                        aws_session_token="TOKEN", region_name="eu-west-3",
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


@contextlib.asynccontextmanager
async def _source():
    """The fake source, a boto3 client of it and a PresignedGet; the requests it saw."""
    seen: list = []
    runner, endpoint = await _serve(seen)
    client = _client(endpoint)
    getter = presigned_get.PresignedGet(client, 4)
    try:
        yield getter, client, seen
    finally:
        await getter.close()
        await runner.cleanup()


def test_presigned_get_answers_what_botocore_answers():
    async def main():
        async with _source() as (getter, client, seen):
            fast = await getter.get("bkt", "obj", "v-1", "0123456789abcdef0123456789abcdef")
            slow = await asyncio.get_running_loop().run_in_executor(None, lambda: client.get_object(
                Bucket="bkt", Key="obj", VersionId="v-1", IfMatch='"0123456789abcdef0123456789abcdef"',
                ChecksumMode="ENABLED"))
            slow["Body"] = slow["Body"].read()
            with pytest.raises(presigned_get.Changed):
                await getter.get("bkt", "changed", None, "0123456789abcdef0123456789abcdef")
            archived = await getter.get("bkt", "archived", None, "0123456789abcdef0123456789abcdef")
        return fast, slow, archived, seen

    fast, slow, archived, seen = asyncio.run(main())
    assert fast["Body"] == BODY                      # as stored: not un-gzipped on the way
    for field in FIELDS:
        assert fast[field] == slow[field], field
    assert fast["Metadata"] == {"Colour": "grÃ¼n", "lower": "a", "Twice": "one, two"}
    want_raw = {k: v for k, v in slow["ResponseMetadata"]["HTTPHeaders"].items() if k not in ("date", "server")}
    got_raw = {k: v for k, v in fast["ResponseMetadata"]["HTTPHeaders"].items() if k not in ("date", "server")}
    assert got_raw == want_raw
    assert archived is None                          # left to botocore, which raises NeedsRestore's error
    presigned = seen[0]
    assert presigned.query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert presigned.query["X-Amz-Security-Token"] == "TOKEN"
    assert presigned.query["versionId"] == "v-1"
    assert "/eu-west-3/s3/" in presigned.query["X-Amz-Credential"]
    assert presigned.query["X-Amz-SignedHeaders"] == "host;if-match;x-amz-checksum-mode"
    assert presigned.headers["If-Match"] == '"0123456789abcdef0123456789abcdef"'
    assert presigned.headers["x-amz-checksum-mode"] == "ENABLED"


def test_a_body_cut_midway_is_asked_again_from_the_first_byte_missing():
    """The rest is asked for with a Range from byte 100 and the same If-Match (a changed object
    would be refused, not spliced): the body read is the source's, byte for byte."""
    etag = "0123456789abcdef0123456789abcdef"

    async def main():
        async with _source() as (getter, client, seen):
            got = await getter.stream("bkt", "flaky", None, etag)
            return await _read_all(got["Body"]), got["ContentLength"], seen

    body, length, seen = asyncio.run(main())
    assert body == BODY and length == len(BODY)
    again = seen[1]
    assert again.headers["Range"] == f"bytes=100-{len(BODY) - 1}" and again.headers["If-Match"] == f'"{etag}"'
    assert again.query["X-Amz-SignedHeaders"] == "host;if-match;range"


async def _read_all(body) -> bytes:
    chunks = []
    while chunk := await body.read(1000):
        chunks.append(chunk)
    body.close()
    return b"".join(chunks)


def test_streamed_gets_and_ranges_answer_what_botocore_answers():
    """Large objects and multipart parts are streamed: the same fields as botocore's, the
    Range signed, and a body cut short fails the read instead of storing a short object."""
    etag = "0123456789abcdef0123456789abcdef"

    async def main():
        async with _source() as (getter, client, seen):
            whole = await getter.stream("bkt", "obj", "v-1", etag)
            whole["Body"] = await _read_all(whole["Body"])
            part = await getter.stream("bkt", "obj", "v-1", f'"{etag}"', (100, 1099))
            part["Body"] = await _read_all(part["Body"])
            slow_whole, slow_part = await asyncio.get_running_loop().run_in_executor(None, lambda: [
                client.get_object(Bucket="bkt", Key="obj", VersionId="v-1", IfMatch=f'"{etag}"', **extra)
                for extra in ({"ChecksumMode": "ENABLED"}, {"Range": "bytes=100-1099"})])
            for slow in (slow_whole, slow_part):
                slow["Body"] = slow["Body"].read()
            cut = await getter.stream("bkt", "cut", None, etag)
            with pytest.raises(source_body.BodyError):
                await _read_all(cut["Body"])
            with pytest.raises(presigned_get.Changed):
                await getter.stream("bkt", "changed", None, etag, (0, 9))
            served = getter.served
        return whole, part, slow_whole, slow_part, served, seen

    whole, part, slow_whole, slow_part, served, seen = asyncio.run(main())
    assert whole["Body"] == BODY and part["Body"] == BODY[100:1100] and part["ContentLength"] == 1000
    for fast, slow in ((whole, slow_whole), (part, slow_part)):
        for field in FIELDS:
            assert fast.get(field) == slow.get(field), field
    assert served == 3
    ranged = seen[1]
    assert ranged.headers["Range"] == "bytes=100-1099" and ranged.headers["If-Match"] == f'"{etag}"'
    assert ranged.query["X-Amz-SignedHeaders"] == "host;if-match;range"


def test_presigned_head_answers_what_botocore_answers():
    """`migrate verify` asks a HEAD per version: signed for HEAD (a GET URL would not do)."""
    async def main():
        async with _source() as (getter, client, seen):
            fast = await getter.head("bkt", "obj", "v-1")
            slow = await asyncio.get_running_loop().run_in_executor(None, lambda: client.head_object(
                Bucket="bkt", Key="obj", VersionId="v-1", ChecksumMode="ENABLED"))
            gone = await getter.head("bkt", "changed", None)
        return fast, slow, gone, seen
    fast, slow, gone, seen = asyncio.run(main())
    for field in FIELDS:
        assert fast[field] == slow[field], field
    assert "Body" not in fast and fast["ContentLength"] == len(BODY)
    assert gone is None                               # left to botocore, which raises as before
    assert seen[0].method == "HEAD" and seen[0].query["X-Amz-SignedHeaders"] == "host;x-amz-checksum-mode"


def test_botocore_reading_what_urls_cannot_in_a_row_turns_urls_off():
    async def main():
        runner, endpoint = await _serve([])
        getter = presigned_get.PresignedGet(_client(endpoint), 4)
        try:
            for _ in range(presigned_get.FALLBACKS - 1):
                getter.botocore_answered("bkt/k")
            assert await getter.get("bkt", "obj", None, "0123456789abcdef0123456789abcdef") is not None
            for _ in range(presigned_get.FALLBACKS - 1):     # the success started the count again
                getter.botocore_answered("bkt/k")
            assert getter.enabled
            getter.botocore_answered("bkt/k")
            assert not getter.enabled
            assert await getter.get("bkt", "obj", None, "0123456789abcdef0123456789abcdef") is None
        finally:
            await getter.close()
            await runner.cleanup()
    asyncio.run(main())
