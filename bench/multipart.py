"""One big object two ways: a single PUT, and a multipart upload with parts in parallel.

    python -m bench.multipart --endpoint URL --access-key AK --secret-key SK [--size-mib 1024]
        [--part-mib 16] [--concurrency 8]

Uses the load generator's lean aiohttp client and signer, so the client is not the
bottleneck; bodies are streamed from one preallocated buffer. Prints MiB/s for both.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import time

import aiohttp

from .s3client import S3, SigV4, chunks


async def _single(s3: S3, bucket: str, size: int, block: bytes) -> float:
    async def body():
        left = size
        while left:
            piece = block[:min(left, len(block))]
            async for c in chunks(piece):
                yield c
            left -= len(piece)
    started = time.perf_counter()
    status, _, text = await s3.request("PUT", f"/{bucket}/mp-bench/single", data=body(),
                                       extra={"Content-Length": str(size)})
    assert status == 200, text
    return time.perf_counter() - started


async def _multipart(s3: S3, bucket: str, size: int, part: int, conc: int, block: bytes) -> float:
    key = f"/{bucket}/mp-bench/multi"
    started = time.perf_counter()
    status, _, text = await s3.request("POST", key, params={"uploads": ""})
    assert status == 200, text
    upload_id = re.search(rb"<UploadId>(.+?)</UploadId>", text).group(1).decode()
    count = -(-size // part)
    sem = asyncio.Semaphore(conc)

    async def one(n: int):
        length = min(part, size - (n - 1) * part)
        async with sem:
            status, _, body = await s3.request("PUT", key, params={"partNumber": str(n), "uploadId": upload_id},
                                               data=chunks(block[:length]), extra={"Content-Length": str(length)})
            assert status == 200, body
    # Part ETags come back in a header the shared client does not expose; ListParts has them.
    await asyncio.gather(*(one(n) for n in range(1, count + 1)))
    status, _, listing = await s3.request("GET", key, params={"uploadId": upload_id, "max-parts": "10000"})
    assert status == 200, listing
    found = re.findall(rb"<PartNumber>(\d+)</PartNumber>.*?<ETag>(.+?)</ETag>", listing, re.S)
    parts = "".join(f"<Part><PartNumber>{int(n)}</PartNumber><ETag>{e.decode()}</ETag></Part>" for n, e in found)
    status, _, text = await s3.request("POST", key, params={"uploadId": upload_id},
                                       data=f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode())
    assert status == 200 and b"<Error>" not in text, text
    return time.perf_counter() - started


async def main_async(args) -> None:
    size, part = args.size_mib << 20, args.part_mib << 20
    block = os.urandom(part)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        s3 = S3(args.endpoint, SigV4(args.access_key, args.secret_key), session)
        await s3.request("PUT", f"/{args.bucket}")
        single = await _single(s3, args.bucket, size, block)
        multi = await _multipart(s3, args.bucket, size, part, args.concurrency, block)
    mib = size / (1 << 20)
    print("| upload | seconds | MiB/s |\n| --- | ---: | ---: |")
    print(f"| single PUT, {args.size_mib} MiB | {single:.1f} | {mib / single:.0f} |")
    print(f"| multipart, {args.part_mib} MiB parts x {args.concurrency} in parallel | {multi:.1f} | {mib / multi:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--bucket", default="pocket-bench")
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--part-mib", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
