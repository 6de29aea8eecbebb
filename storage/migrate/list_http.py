"""Source listings without botocore: ListObjectsV2, ListObjectVersions and GetBucketVersioning
by presigned URL (presign.py) over http.client, the XML read by ElementTree's C parser.

botocore's XML parser was half of a 10,000-object `verify`'s CPU, and importing botocore
and building its client most of a 1,000-object one's (py-spy, session 8). A listing needs
neither: one signed GET per page, a few fields per entry. What botocore did for these calls
is done the same way here: EncodingType=url asked for and keys decoded as it decodes them
(`unquote_plus`: spaces may come back as "+", a "+" as "%2B"), Last-Modified parsed as
source_common.parse_timestamp parses it, pagination by continuation token (versions: key and
version-id markers), up to source_common.max_attempts() tries with standard backoff on 5xx,
throttling and broken connections, and the environment's proxy. A refusal is a SourceError
naming the bucket, the S3 error code and message.

Connections are kept per host and lent to one listing request at a time (source_http.py;
list_bucket lists prefixes from several threads at once).
"""
from __future__ import annotations

import http.client
import xml.etree.ElementTree as ET
from typing import Iterator, NamedTuple
from urllib.parse import unquote_plus, urlsplit

from . import presign, source_common, source_http
from .inventory import Entry
from .state import MigrationError

EXPIRES = 900
RETRIED = {500, 502, 503, 504}
THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
             "InternalError", "ServiceUnavailable"}


class SourceError(MigrationError):
    """The source refused a listing (or never answered): said in one line, no traceback."""


class Page(NamedTuple):
    entries: list[Entry]          # in the source's order (from Lister.pages, versions: each key's newest first)
    prefixes: list[str]           # CommonPrefixes, with a delimiter
    next: dict[str, str] | None   # the query parameters of the next page; None: this was the last


class Lister:
    """The listings of one source client (source.SourceClient.lister)."""

    def __init__(self, client):
        self.client = client
        self.signer = presign.Presigner(client)
        self.http = source_http.Connections(client)

    def versioning(self, bucket: str) -> str:
        """"Enabled", "Suspended" or "" as GetBucketVersioning says."""
        root = ET.fromstring(self._get(bucket, {"versioning": ""}, "GetBucketVersioning"))
        ns = _namespace(root)
        return root.findtext(ns + "Status") or ""

    def pages(self, bucket: str, versioned: bool, *, prefix: str = "", delimiter: str = "",
              start_after: str = "", page_size: int | None = None) -> Iterator[Page]:
        """Every page of the bucket's listing (every version and delete marker when `versioned`)."""
        query = {"encoding-type": "url", **({"prefix": prefix} if prefix else {}),
                 **({"delimiter": delimiter} if delimiter else {}),
                 **({"max-keys": str(page_size)} if page_size else {})}
        if versioned:
            query["versions"] = ""
            if start_after:
                query["key-marker"] = start_after
        else:
            query["list-type"] = "2"
            if start_after:
                query["start-after"] = start_after
        operation = "ListObjectVersions" if versioned else "ListObjectsV2"
        held: list[Entry] = []
        while True:
            page = parse_page(self._get(bucket, query, operation), versioned)
            if versioned:
                # a key's history is ordered whole (_history_order), so the last key of a
                # page that has more waits for the rest of its versions in the next one
                entries = held + page.entries
                held = []
                if page.next is not None and entries:
                    last = entries[-1].key
                    while entries and entries[-1].key == last:
                        held.insert(0, entries.pop())
                page = page._replace(entries=_history_order(entries))
            yield page
            if page.next is None:
                return
            query = {k: v for k, v in query.items() if k not in ("start-after", "continuation-token", "key-marker",
                                                                  "version-id-marker")}
            query.update(page.next)

    def _get(self, bucket: str, query: dict[str, str], operation: str) -> bytes:
        """The body of a 200 answer to a signed GET of the bucket, retried as botocore's standard mode would."""
        attempts = source_common.max_attempts()
        for attempt in range(1, attempts + 1):
            url = urlsplit(self.signer.bucket_url(bucket, query, EXPIRES))
            try:
                status, headers, body = self._request(url)
            except (OSError, http.client.HTTPException) as e:
                if attempt == attempts:
                    raise SourceError(f"{operation} of s3://{bucket} at {url.scheme}://{url.netloc}: "
                                      f"no answer after {attempts} tries ({e!r})") from None
                source_common.backoff(attempt)
                continue
            if status == 200:
                return body
            code, message = _error(body)
            if (status in RETRIED or code in THROTTLED) and attempt < attempts:
                source_common.backoff(attempt)
                continue
            region = headers.get("x-amz-bucket-region")
            hint = f"; the bucket is in {region}: give --source-region {region}" \
                if region and region != self.signer._base(bucket)[2] else ""
            said = message if message else repr(body[:200])
            raise SourceError(f"{operation} of s3://{bucket} at {url.scheme}://{url.netloc} answered {status} "
                              f"{code or ''}: {said}{hint}")
        raise AssertionError("unreachable")

    def _request(self, url) -> tuple[int, dict[str, str], bytes]:
        conn, r = self.http.request("GET", url.geturl())
        try:
            body = r.read()
        except BaseException:
            self.http.done(url.geturl(), conn, r, False)
            raise
        self.http.done(url.geturl(), conn, r, True)
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def parse_page(body: bytes, versioned: bool) -> Page:
    """One ListObjectsV2 / ListObjectVersions answer: its entries, common prefixes and the next page's query."""
    root = ET.fromstring(body)
    ns = _namespace(root)
    cut = len(ns)
    encoded = root.findtext(ns + "EncodingType") == "url"
    decode = unquote_plus if encoded else str
    entries, prefixes, top = [], [], {}
    for el in root:
        tag = el.tag[cut:]
        if tag == "Contents" or tag == "Version" or tag == "DeleteMarker":
            f = {c.tag[cut:]: c.text or "" for c in el}
            marker = tag == "DeleteMarker"
            entries.append(Entry(
                decode(f.get("Key", "")),
                version_id=(f.get("VersionId") or "null") if versioned else "null",
                is_latest=f.get("IsLatest", "true") == "true" if versioned else True,
                delete_marker=marker, size=0 if marker else int(f.get("Size") or 0),
                etag="" if marker else f.get("ETag", "").strip('"'),
                last_modified=source_common.parse_timestamp(f["LastModified"]).timestamp(),
                storage_class="" if marker else f.get("StorageClass") or "STANDARD"))
        elif tag == "CommonPrefixes":
            prefixes.append(decode(el.findtext(ns + "Prefix") or ""))
        else:
            top[tag] = el.text or ""
    following = None
    if top.get("IsTruncated") == "true":
        if versioned:
            if not top.get("NextKeyMarker"):
                raise SourceError("ListObjectVersions answered a truncated page without NextKeyMarker")
            following = {"key-marker": decode(top["NextKeyMarker"]),
                         **({"version-id-marker": top["NextVersionIdMarker"]} if top.get("NextVersionIdMarker")
                            else {})}
        else:
            if not top.get("NextContinuationToken"):
                raise SourceError("ListObjectsV2 answered a truncated page without NextContinuationToken")
            following = {"continuation-token": top["NextContinuationToken"]}
    return Page(entries, prefixes, following)


def _history_order(listed: list[Entry]) -> list[Entry]:
    """S3 interleaves a key's versions and markers newest first; some servers (moto) list all
    versions, then all markers, with Last-Modified in whole seconds. So: the latest first,
    then newest first by Last-Modified, the listing's order breaking ties."""
    position = {id(e): i for i, e in enumerate(listed)}
    return sorted(listed, key=lambda e: (e.key.encode(), not e.is_latest, -e.last_modified, position[id(e)]))


def _namespace(root) -> str:
    return root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""


def _error(body: bytes) -> tuple[str | None, str | None]:
    """(Code, Message) of an S3 error body, (None, None) when it is not one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None, None
    ns = _namespace(root)
    return root.findtext(ns + "Code"), root.findtext(ns + "Message")
