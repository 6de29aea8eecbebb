"""A lean S3 client for benchmarks: path-style calls over one aiohttp session.

Why it exists: boto3 spends more CPU per request than a small S3 server spends serving
it, so a boto3-driven benchmark measures the client. This one keeps the client cheap: a
hand-rolled SigV4 signer (the signing key is derived once per UTC day, bodies are sent
as UNSIGNED-PAYLOAD so they are never hashed) and large bodies sent as zero-copy chunks.
bench/load.py drives it; multipart.py and repair.py use it too.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import sys
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

KIB, MIB = 1024, 1024 * 1024
LIST_PAGE = 1000
STREAM_OVER, STREAM_CHUNK = 8 * MIB, 256 * KIB  # see S3.put
UNSIGNED = "UNSIGNED-PAYLOAD"
SIGNED_HEADERS = "host;x-amz-content-sha256;x-amz-date"
MAX_ERROR_BODIES = 5


def uri_encode(s: str, safe: str = "/-_.~") -> str:
    """RFC 3986 encoding as SigV4 wants it: '/' kept in paths, but not in query parts."""
    return quote(s, safe=safe)


def canonical_query(params: dict[str, str]) -> str:
    """SigV4 canonical query string; also sent verbatim so what is signed is what is sent."""
    pairs = sorted((uri_encode(k, "-_.~"), uri_encode(str(v), "-_.~")) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


class SigV4:
    """AWS Signature Version 4 header signing for S3 requests with unsigned payloads.

    Only host, x-amz-content-sha256 and x-amz-date are signed, the minimum S3 requires;
    transport headers aiohttp adds (Content-Length, User-Agent...) may stay unsigned."""

    def __init__(self, access_key: str, secret_key: str, region: str = "us-east-1", service: str = "s3"):
        self.access_key, self.secret_key = access_key, secret_key
        self.region, self.service = region, service
        self._day, self._key = "", b""

    def signing_key(self, day: str) -> bytes:
        """The four-HMAC key chain depends only on the date, so derive it once a day."""
        if day != self._day:
            key = f"AWS4{self.secret_key}".encode()
            for part in (day, self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day, self._key = day, key
        return self._key

    def headers(self, method: str, host: str, path: str, query: str = "",
                now: dt.datetime | None = None) -> dict[str, str]:
        """Headers to send; `path` and `query` must already be canonically encoded."""
        amz_date = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        canonical = "\n".join((method, path, query, f"host:{host}", f"x-amz-content-sha256:{UNSIGNED}",
                               f"x-amz-date:{amz_date}", "", SIGNED_HEADERS, UNSIGNED))
        to_sign = "\n".join(("AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()))
        signature = hmac.new(self.signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        return {"Host": host, "x-amz-content-sha256": UNSIGNED, "x-amz-date": amz_date,
                "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                 f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}"}


class S3:
    """The handful of path-style S3 calls the benchmark needs, over one shared session."""

    def __init__(self, endpoint: str, signer: SigV4, session: aiohttp.ClientSession):
        """`endpoint` may name several gateways of one cluster, comma-separated: requests
        then go to each in turn, as a round-robin load balancer would send them."""
        parts = [urlsplit(e.strip()) for e in endpoint.split(",") if e.strip()]
        self.targets = [(f"{p.scheme}://{p.netloc}", p.netloc) for p in parts]
        self.turn = 0
        self.signer, self.session = signer, session
        self.errors_shown = 0

    def next_target(self) -> tuple[str, str]:
        """(base URL, Host header) of the gateway the next request goes to."""
        self.turn = (self.turn + 1) % len(self.targets)
        return self.targets[self.turn]

    async def request(self, method: str, path: str, params: dict | None = None, data=None,
                      sink: bool = False, extra: dict | None = None, quiet: bool = False) -> tuple[int, int, bytes]:
        """Send one signed request; returns (status, body length, body).

        With `sink`, a successful body is counted and dropped rather than kept, so large
        GETs cost the client no memory. Non-2xx bodies are always read and the first few
        printed to stderr (unless `quiet`: the caller judges the answer)."""
        path = uri_encode(path)
        query = canonical_query(params) if params else ""
        base, host = self.next_target()
        headers = self.signer.headers(method, host, path, query)
        if extra:
            headers.update(extra)
        url = URL(f"{base}{path}?{query}" if query else base + path, encoded=True)
        async with self.session.request(method, url, headers=headers, data=data) as resp:
            if sink and resp.status < 300:
                n = 0
                async for chunk in resp.content.iter_any():
                    n += len(chunk)
                return resp.status, n, b""
            body = await resp.read()
            if resp.status >= 300 and not quiet:
                self.report(f"{method} {path} -> {resp.status}: {body[:500].decode(errors='replace')}")
            return resp.status, len(body), body

    def report(self, message: str) -> None:
        if self.errors_shown < MAX_ERROR_BODIES:
            print(f"error: {message}", file=sys.stderr)
        self.errors_shown += 1

    async def ensure_bucket(self, bucket: str) -> None:
        status, _, body = await self.request("PUT", f"/{bucket}", quiet=True)
        if not (status == 200 or status == 409 and b"BucketAlreadyOwnedByYou" in body):
            raise SystemExit(f"cannot create bucket {bucket!r}: HTTP {status}")

    async def put(self, bucket: str, key: str, body: bytes) -> bool:
        """PUT one object. Large bodies go out as memoryview chunks with an explicit
        Content-Length: handing aiohttp 64 MiB of bytes costs ~6x the client CPU, since
        aiohttp and asyncio copy the whole body several times before it reaches the socket."""
        stream = len(body) > STREAM_OVER
        status, _, _ = await self.request("PUT", f"/{bucket}/{key}", data=chunks(body) if stream else body,
                                          extra={"Content-Length": str(len(body))} if stream else None)
        return 200 <= status < 300

    async def list_objects(self, bucket: str, prefix: str, lat: list[float] | None = None) -> dict[str, int]:
        """Page through ListObjectsV2 (max-keys 1000); returns key -> size, per-page latency into `lat`."""
        found: dict[str, int] = {}
        params = {"list-type": "2", "prefix": prefix, "max-keys": str(LIST_PAGE)}
        while True:
            t0 = time.perf_counter()
            status, _, body = await self.request("GET", f"/{bucket}", params)
            if status != 200:
                raise RuntimeError(f"ListObjectsV2 failed: HTTP {status}")
            if lat is not None:
                lat.append(time.perf_counter() - t0)
            root = ET.fromstring(body)
            values = {local(e.tag): e for e in root}
            for item in root:
                if local(item.tag) == "Contents":
                    fields = {local(e.tag): e.text for e in item}
                    found[fields["Key"]] = int(fields.get("Size") or 0)
            token = values.get("NextContinuationToken")
            if getattr(values.get("IsTruncated"), "text", "false") != "true" or token is None:
                return found
            params["continuation-token"] = token.text


async def chunks(body: bytes):
    """Zero-copy slices of `body`; aiohttp drains the socket between them."""
    view = memoryview(body)
    for i in range(0, len(view), STREAM_CHUNK):
        yield view[i:i + STREAM_CHUNK]


def local(tag: str) -> str:
    """Element name without its XML namespace, so servers that omit the S3 namespace work too."""
    return tag.rsplit("}", 1)[-1]
