"""The client's ceiling: an S3 server that does no work, in a process of its own.

PUT reads the body and forgets it (only its size is kept), GET answers that many zero
bytes, LIST pages through the keys it was given, DELETE forgets; no signature check,
no disk. What `bench.load` reaches against it is the most this box's client can drive,
so a server measured close to it is limited by the client, not by itself.

    python -m bench.peers.null --port 9999
"""
from __future__ import annotations

import argparse
import bisect
import os
import sys
from xml.sax.saxutils import escape

from aiohttp import web

from . import Target, procs
from .ports import free_ports

ZEROS = bytes(1 << 20)


def app() -> web.Application:
    sizes: dict[tuple[str, str], int] = {}
    keys: dict[str, list[str]] = {}   # bucket -> sorted keys, for LIST

    async def handle(request: web.Request) -> web.StreamResponse:
        bucket, _, key = request.path.lstrip("/").partition("/")
        if not key:
            return bucket_call(request, bucket)
        if request.method == "PUT":
            n = 0
            async for chunk in request.content.iter_any():
                n += len(chunk)
            if (bucket, key) not in sizes:
                bisect.insort(keys.setdefault(bucket, []), key)
            sizes[(bucket, key)] = n
            return web.Response(headers={"ETag": '"0"'})
        if request.method == "DELETE":
            if sizes.pop((bucket, key), None) is not None:
                names = keys[bucket]
                del names[bisect.bisect_left(names, key)]
            return web.Response(status=204)
        size = sizes.get((bucket, key))
        if size is None:
            return web.Response(status=404)
        resp = web.StreamResponse(headers={"Content-Length": str(size), "ETag": '"0"'})
        await resp.prepare(request)
        while size > 0:
            await resp.write(ZEROS[:min(size, len(ZEROS))])
            size -= len(ZEROS)
        await resp.write_eof()
        return resp

    def bucket_call(request: web.Request, bucket: str) -> web.Response:
        if request.method != "GET":
            return web.Response()
        q = request.query
        prefix, limit = q.get("prefix", ""), int(q.get("max-keys", "1000"))
        names = keys.get(bucket, [])
        start = bisect.bisect_right(names, q["continuation-token"]) if "continuation-token" in q \
            else bisect.bisect_left(names, prefix)
        page = [k for k in names[start:start + limit] if k.startswith(prefix)]
        more = len(page) == limit and start + limit < len(names) and names[start + limit].startswith(prefix)
        body = "".join(f"<Contents><Key>{escape(k)}</Key><Size>{sizes[(bucket, k)]}</Size></Contents>" for k in page)
        token = f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>" if more else ""
        return web.Response(content_type="application/xml", text=(
            '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>' + escape(bucket) + "</Name>"
            f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{token}{body}</ListBucketResult>"))

    application = web.Application(client_max_size=0)
    application.router.add_route("*", "/{tail:.*}", handle)
    return application


def start(work: str) -> Target:
    os.makedirs(work, exist_ok=True)
    port = free_ports(1)[0]
    log = os.path.join(work, "null.log")
    proc = procs.spawn([sys.executable, "-m", "bench.peers.null", "--port", str(port)], log,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    endpoint = f"http://127.0.0.1:{port}"
    try:
        procs.wait_http(endpoint + "/", proc, log, 60)
    except BaseException:
        procs.stop(proc, 5)
        raise
    return Target("null", endpoint, "any", "any", stop=lambda: procs.stop(proc, 10), pid=proc.pid,
                  describe="null server (bench/peers/null.py): no work, no disk; the client's ceiling")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.peers.null", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    web.run_app(app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
