"""Source objects read with presigned URLs: small ones whole (`get`) over aiohttp, in the
copy's event loop (a request there costs less than a hop to a thread); HEADs (`head`) and
large ones and multipart parts (`stream`, source_body.py) over http.client in threads.

Backfilling small objects is CPU-bound, and botocore's get_object is most of the source
side's cost: ~1.1 ms of CPU per call (request building, signing, response parsing and a
hop to a thread) where an aiohttp GET on the event loop costs ~0.25 ms and presigning the request
(presign.py: SigV4 with the client's credentials, session token, region, endpoint and
addressing style) ~0.05 ms. If-Match, Range and x-amz-checksum-mode are signed headers,
so the source checks them as before. A large body read through botocore also crossed to
a thread for every MiB and through urllib3's buffers: 0.66 s of CPU per GiB against
0.35-0.46 s streamed by aiohttp (256 MiB from SeaweedFS, 4 at once); source_body.py says
what receiving in a thread saves over aiohttp.

The answer is shaped like get_object's (the same fields, parsed from the same raw
headers the way botocore does), so the copy carries exactly what it carried before.
Anything this path does not expect (a redirect to another region, a refused signature,
an archived object, a connection error) is left to botocore: `get` and `stream` return
None and the caller makes the ordinary call, which answers or fails as it always did.
When botocore then succeeds where the URL did not (for a few objects in a row), the URL
path is wrong for this source and is no longer tried.
"""
from __future__ import annotations

import asyncio
import http.client
import logging
import threading
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from ..s3.digests import CHECKSUM_ALGORITHMS
from . import presign, source_body, source_common, source_http

log = logging.getLogger("pocket.migrate.copy")

CHUNK = 1 << 20                   # bytes of a large body handed to the copy at a time (its segment size)
EXPIRES = 900                     # seconds a presigned URL stays valid; it is used at once
FALLBACKS = 3                     # objects in a row botocore read after the URL failed: URLs given up
CHANGED = (404, 405, 412)         # gone, a delete marker, or If-Match failed: changed since listed
_META = "x-amz-meta-"
_FIELDS = {"content-type": "ContentType", "cache-control": "CacheControl",
           "content-disposition": "ContentDisposition", "content-encoding": "ContentEncoding",
           "content-language": "ContentLanguage", "etag": "ETag", "x-amz-version-id": "VersionId",
           "x-amz-server-side-encryption": "ServerSideEncryption",
           "x-amz-server-side-encryption-customer-algorithm": "SSECustomerAlgorithm",
           "x-amz-checksum-type": "ChecksumType",
           **{f"x-amz-checksum-{a}": f"Checksum{a.upper()}" for a in CHECKSUM_ALGORITHMS}}


class Changed(Exception):
    """The source answered 404, 405 or 412: the version is not the one listed."""


class PresignedGets:
    """One PresignedGet per source client of a copy process, closed together at its end."""

    def __init__(self, connections: int):
        self.connections = connections
        self._of: dict[int, PresignedGet] = {}

    def of(self, client) -> "PresignedGet":
        if id(client) not in self._of:
            self._of[id(client)] = PresignedGet(client, self.connections)
        return self._of[id(client)]

    async def close(self) -> None:
        for one in self._of.values():
            await one.close()
        self._of.clear()


class PresignedGet:
    """Presigned GETs of one source client: small ones on one aiohttp session (made in the
    running loop at the first), HEADs and large bodies on kept http.client connections."""

    def __init__(self, client, connections: int):
        self.client, self.connections = client, connections
        self.enabled, self.fallbacks = True, 0
        self.served = 0            # objects read with URLs (the copy's report says how many)
        self._counted = threading.Lock()
        self._session = None               # aiohttp's, made at the first small GET
        self.http = source_http.Connections(client)
        self._proxies: dict[str, str | None] = {}
        self.presigner: presign.Presigner | None = presign.Presigner(client)

    async def get(self, bucket: str, key: str, version_id: str | None, etag: str) -> dict | None:
        """The object as get_object would return it, its body as bytes; None: use botocore."""
        if not self.enabled:
            return None
        import aiohttp
        from yarl import URL
        headers = {"if-match": f'"{etag}"', "x-amz-checksum-mode": "ENABLED"}
        url = self._url(bucket, key, version_id, headers)
        try:
            # encoded: sent exactly as signed, not re-quoted by yarl
            async with self._open().get(URL(url, encoded=True), headers=headers, proxy=self._proxy_for(url)) as r:
                if r.status in CHANGED:
                    raise Changed(f"{bucket}/{key} answered {r.status}")
                if r.status != 200:
                    log.debug("presigned GET of %s/%s answered %d; asking botocore", bucket, key, r.status)
                    return None
                got = _as_get_object(r.raw_headers, await r.read())
                self.served += 1
                self.fallbacks = 0
                return got
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            log.debug("presigned GET of %s/%s failed (%r); asking botocore", bucket, key, e)
            return None

    async def stream(self, bucket: str, key: str, version_id: str | None, etag: str,
                     byte_range: tuple[int, int] | None = None) -> dict | None:
        """The object (or the inclusive `byte_range` of it) as get_object would return it, its
        body a source_body.ThreadedBody the caller reads and closes; None: use botocore."""
        if not self.enabled:
            return None
        if_match = etag if etag.startswith('"') else f'"{etag}"'
        headers = {"if-match": if_match}
        if byte_range is None:
            headers["x-amz-checksum-mode"] = "ENABLED"
        else:
            headers["range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        url = self._url(bucket, key, version_id, headers)
        try:
            conn, r = await asyncio.get_running_loop().run_in_executor(None, self.http.request, "GET", url, headers)
        except (OSError, http.client.HTTPException) as e:
            log.debug("presigned GET of %s/%s failed (%r); asking botocore", bucket, key, e)
            return None
        length = r.length
        if r.status in CHANGED:
            self.http.done(url, conn, r, False)
            raise Changed(f"{bucket}/{key} answered {r.status}")
        if r.status != (200 if byte_range is None else 206) or length is None or \
                (byte_range is not None and length != byte_range[1] - byte_range[0] + 1):
            # chunked (the copy must know the size it stores), or not what was asked
            log.debug("presigned GET of %s/%s answered %d (%s bytes); asking botocore", bucket, key, r.status, length)
            self.http.done(url, conn, r, False)
            return None
        self.served += 1
        self.fallbacks = 0

        def rest(first: int, last: int) -> tuple[str, dict[str, str]]:
            again = {"if-match": if_match, "range": f"bytes={first}-{last}"}
            return self._url(bucket, key, version_id, again), again
        first = byte_range[0] if byte_range else 0
        body = source_body.ThreadedBody(self.http, rest, (url, conn, r), f"{bucket}/{key}", first, first + length - 1,
                                        CHUNK)
        return _as_get_object(_raw(r), body, length)

    async def head(self, bucket: str, key: str, version_id: str | None, part_number: int | None = None) -> dict | None:
        """The version's HEAD (of one part with `part_number`) as head_object would return it
        (checksums asked for); None: use botocore. `pocket migrate verify` asks one per
        version, the copy one per multipart object and one per part of it. Over the kept
        http.client connections, in a thread: a copy or `verify --deep` of large objects
        then never imports aiohttp (~0.1 s of CPU with its TLS contexts and attrs classes,
        a tenth of a 128 MiB copy)."""
        if not self.enabled:
            return None
        return await asyncio.get_running_loop().run_in_executor(None, self.head_now, bucket, key, version_id,
                                                                part_number)

    def head_now(self, bucket: str, key: str, version_id: str | None, part_number: int | None = None) -> dict | None:
        """`head` in the calling thread (`migrate verify` asks many in a row from one)."""
        if not self.enabled:
            return None
        headers = {"x-amz-checksum-mode": "ENABLED"}
        url = self._url(bucket, key, version_id, headers, "HEAD", part_number)
        try:
            got = self._head(url, headers, part_number)
        except (OSError, http.client.HTTPException, ValueError) as e:
            log.debug("presigned HEAD of %s/%s failed (%r); asking botocore", bucket, key, e)
            return None
        if got is None:
            log.debug("presigned HEAD of %s/%s was refused; asking botocore", bucket, key)
            return None
        with self._counted:        # from several threads at once
            self.served += 1
            self.fallbacks = 0
        return got

    def _head(self, url: str, headers: dict[str, str], part_number: int | None) -> dict | None:
        conn, r = self.http.request("HEAD", url, headers)
        r.read()
        self.http.done(url, conn, r, True)
        # S3 answers a part 206 (botocore takes any 2xx, so 200 is taken here too)
        if r.status not in ((200,) if part_number is None else (200, 206)):
            return None
        got = _as_get_object(_raw(r), b"", int(r.getheader("Content-Length") or 0))
        del got["Body"]
        return got

    def _url(self, bucket: str, key: str, version_id: str | None, headers: dict[str, str],
             method: str = "GET", part_number: int | None = None) -> str:
        if self.presigner is not None:
            try:
                return self.presigner.get_url(bucket, key, version_id, headers, EXPIRES, method=method,
                                              part_number=part_number)
            except presign.CannotSign as e:
                log.info("presigning with botocore for every object: %s", e)
                self.presigner = None
        params = {"Bucket": bucket, "Key": key, "IfMatch": headers.get("if-match"),
                  **({"ChecksumMode": "ENABLED"} if "x-amz-checksum-mode" in headers else {}),
                  **({"Range": headers["range"]} if "range" in headers else {}),
                  **({"VersionId": version_id} if version_id else {}),
                  **({"PartNumber": part_number} if part_number is not None else {})}
        if method == "HEAD":
            params.pop("IfMatch", None)
        return self.client.generate_presigned_url("head_object" if method == "HEAD" else "get_object", Params=params,
                                                  ExpiresIn=EXPIRES)

    def botocore_answered(self, why: str) -> None:
        """botocore read an object that the presigned URL could not: after a few in a row
        (one may be a dropped connection, which a long copy meets now and then), stop
        using URLs."""
        self.fallbacks += 1
        if self.enabled and self.fallbacks >= FALLBACKS:
            self.enabled = False
            log.warning("presigned GETs do not work with this source (%s) but botocore's do; small objects "
                        "are read with botocore from now on (slower, the same result)", why)

    def _open(self):
        if self._session is None:
            import aiohttp
            # auto_decompress off: a Content-Encoding: gzip object is copied as stored
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections, ssl=_ssl_of(self.client)),
                auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent"),
                timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=60))
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        """The proxy botocore would use for this host (source_http.proxy_for), looked up once
        per host (aiohttp's trust_env looks it up for every request, in a thread)."""
        parts = urlsplit(url)
        if parts.netloc not in self._proxies:
            self._proxies[parts.netloc] = source_http.proxy_for(parts)
        return self._proxies[parts.netloc]

    async def close(self) -> None:
        self.http.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _ssl_of(client):
    """aiohttp's `ssl` for the source: its certificates (source_common.ssl_context), made only for
    an https source (reading a CA bundle costs tens of milliseconds)."""
    direct = getattr(client, "direct", None)
    url = direct.origin if direct is not None else client.meta.endpoint_url
    return source_common.ssl_context(client) if url.startswith("https:") else True


def _raw(response: http.client.HTTPResponse) -> list[tuple[bytes, bytes]]:
    """An http.client answer's headers as the raw pairs aiohttp gives (http.client decoded them as ISO-8859-1)."""
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.getheaders()]


def _as_get_object(raw_headers, body, length: int | None = None) -> dict:
    """get_object's fields from the raw headers, as botocore parses them: names keep the
    server's case (user metadata keys with them), values are ISO-8859-1 (http.client's
    decoding), a repeated header's values are joined with ", " (urllib3's). `body`: the
    bytes, or a Streamed of `length` bytes."""
    headers: dict[str, str] = {}
    lower: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        low = name.lower()
        if low in lower:
            headers[lower[low]] += ", " + value
        else:
            lower[low], headers[name] = name, value
    length = len(body) if length is None else length
    got = {"Body": body, "ContentLength": length,
           "Metadata": {n[len(_META):]: v for n, v in headers.items() if n.lower().startswith(_META)},
           "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {n.lower(): v for n, v in headers.items()}}}
    http = got["ResponseMetadata"]["HTTPHeaders"]
    for name, field in _FIELDS.items():
        if name in http:
            got[field] = http[name]
    if "last-modified" in http:
        got["LastModified"] = parsedate_to_datetime(http["last-modified"])
    if "x-amz-tagging-count" in http:
        got["TagCount"] = int(http["x-amz-tagging-count"])
    if "content-length" in http and int(http["content-length"]) != length:
        raise ValueError(f"body of {length} bytes, Content-Length {http['content-length']}")
    return got
