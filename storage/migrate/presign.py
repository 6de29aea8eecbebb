"""SigV4 presigned URLs for one source client, without botocore's per-call pipeline.

botocore's generate_presigned_url runs its whole request machinery for every URL
(parameter validation, the endpoint rules engine, events, the CRT signer): ~0.3 ms of
CPU, the largest cost left per small object copied. Everything that is the same for
every object of a bucket (scheme, host, the path before the key, region and service) is
known once: from the client's `direct` settings when it has them (source.py: an explicit
endpoint, path-style, keys from the environment or the 0600 file), else from a URL
botocore presigned, so endpoint resolution, addressing style and AWS's own endpoints stay
botocore's. What changes per request (key, version, query, time) is signed here as
SigV4's query-string form prescribes, with the signing key derived once a day.
Credentials are read from the client at every URL, so refreshed ones (instance roles,
assumed roles, their session tokens) are used as botocore would. Object GETs and HEADs
(presigned_get.py) and the listings (list_http.py) are signed here.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from functools import lru_cache
from urllib.parse import parse_qs, quote, urlsplit

PROBE = "pocket-presign-probe"
ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


class CannotSign(Exception):
    """This client's URLs are not SigV4 with credentials (anonymous, or another signer)."""


class Presigner:
    def __init__(self, client):
        self.client = client
        self.direct = getattr(client, "direct", None)      # source.SourceClient's, when it has them
        self._bases: dict[str, tuple[str, str, str, str]] = {}
        self._keys: dict[tuple, bytes] = {}

    def get_url(self, bucket: str, key: str, version_id: str | None, headers: dict[str, str],
                expires: int, now: float | None = None, method: str = "GET", part_number: int | None = None) -> str:
        """A GET (or HEAD) URL for bucket/key (a version; one part of a multipart object with
        `part_number`); `headers` (names in lower case) are signed and must be sent as given."""
        query = {}
        if version_id:
            query["versionId"] = version_id
        if part_number is not None:
            query["partNumber"] = str(part_number)
        return self._sign(method, bucket, key, query, headers, expires, now)

    def bucket_url(self, bucket: str, query: dict[str, str], expires: int, now: float | None = None) -> str:
        """A GET URL of the bucket itself with `query` (a listing, ?versioning)."""
        return self._sign("GET", bucket, None, query, {}, expires, now)

    def _sign(self, method: str, bucket: str, key: str | None, query: dict[str, str], headers: dict[str, str],
              expires: int, now: float | None) -> str:
        origin, prefix, region, service = self._base(bucket)
        access_key, secret_key, token = self._credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day = amz_date[:8]
        scope = f"{day}/{region}/{service}/aws4_request"
        signed = {"host": host_of(origin), **headers}
        names = ";".join(sorted(signed))
        query = {**query, "X-Amz-Algorithm": ALGORITHM, "X-Amz-Credential": f"{access_key}/{scope}",
                 "X-Amz-Date": amz_date, "X-Amz-Expires": str(expires), "X-Amz-SignedHeaders": names}
        if token:
            query["X-Amz-Security-Token"] = token
        canonical_query = "&".join(f"{_quoted(k)}={_quoted(v)}" for k, v in sorted(query.items()))
        # a bucket's own URL: its path without the last "/" (botocore's form), "/" at least
        path = prefix + quote(key, safe="/~") if key is not None else prefix.rstrip("/") or "/"
        canonical = "\n".join([method, path, canonical_query,
                               "".join(f"{n}:{signed[n].strip()}\n" for n in sorted(signed)), names,
                               "UNSIGNED-PAYLOAD"])
        to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(secret_key, day, region, service), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        return f"{origin}{path}?{canonical_query}&X-Amz-Signature={signature}"

    def _credentials(self) -> tuple[str, str, str | None]:
        if self.direct is not None:
            return self.direct.access_key, self.direct.secret_key, self.direct.token
        creds = self.client._request_signer._credentials
        if creds is None:
            raise CannotSign("the source client has no credentials")
        frozen = creds.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    def _base(self, bucket: str) -> tuple[str, str, str, str]:
        """(scheme://host, path before the key, region, service) of a bucket: path-style on
        the direct settings' endpoint, or taken from a URL botocore presigned for it."""
        if bucket not in self._bases:
            if self.direct is not None:
                self._bases[bucket] = (self.direct.origin, f"{self.direct.path}/{quote(bucket, safe='')}/",
                                       self.direct.region, "s3")
                return self._bases[bucket]
            url = urlsplit(self.client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": PROBE}))
            params = parse_qs(url.query)
            if params.get("X-Amz-Algorithm") != [ALGORITHM] or not url.path.endswith("/" + PROBE) or \
                    any(not name.startswith("X-Amz-") for name in params):
                raise CannotSign(f"botocore presigns {bucket} otherwise: {url.scheme}://{url.netloc}{url.path}")
            _access, _day, region, service, _end = params["X-Amz-Credential"][0].split("/")
            self._bases[bucket] = (f"{url.scheme}://{url.netloc}", url.path[:-len(PROBE)], region, service)
        return self._bases[bucket]

    def _signing_key(self, secret: str, day: str, region: str, service: str) -> bytes:
        cache = (secret, day, region, service)
        if cache not in self._keys:
            key = ("AWS4" + secret).encode()
            for part in (day, region, service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {cache: key}        # one day's key at a time
        return self._keys[cache]


def host_of(origin: str) -> str:
    """The Host header as botocore signs it and aiohttp sends it: no default port."""
    scheme, _, netloc = origin.partition("://")
    return netloc.lower().removesuffix(_DEFAULT_PORTS.get(scheme, "\0"))


@lru_cache(maxsize=1024)
def _quoted(value: str) -> str:
    """A query name or value as SigV4 encodes it. Cached: all but the version id are the same
    from one URL to the next (the credential's "/" and the signed headers' ";" take quote's
    slow path), and quoting them was half of presigning's CPU, ~5 % of a `migrate verify`
    (py-spy --gil; ~31 us a URL)."""
    return quote(value, safe="-_.~")

