"""SigV4 presigned GetObject and HeadObject URLs for one source client, without botocore's per-call pipeline.

botocore's generate_presigned_url runs its whole request machinery for every URL
(parameter validation, the endpoint rules engine, events, the CRT signer): ~0.3 ms of
CPU, the largest cost left per small object copied. Everything that is the same for
every object of a bucket (scheme, host, the path before the key, region and service) is
taken once from a URL botocore presigned, so endpoint resolution, addressing style and
custom endpoints stay botocore's; what changes per object (key, version, time) is signed
here as SigV4's query-string form prescribes, with the signing key derived once a day.
Credentials are read from the client at every URL, so refreshed ones (instance roles,
assumed roles, their session tokens) are used as botocore would.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs, quote, urlsplit

PROBE = "pocket-presign-probe"
ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


class CannotSign(Exception):
    """This client's URLs are not SigV4 with credentials (anonymous, or another signer)."""


class Presigner:
    def __init__(self, client):
        self.client = client
        self._bases: dict[str, tuple[str, str, str, str]] = {}
        self._keys: dict[tuple, bytes] = {}

    def get_url(self, bucket: str, key: str, version_id: str | None, headers: dict[str, str],
                expires: int, now: float | None = None, method: str = "GET", part_number: int | None = None) -> str:
        """A GET (or HEAD) URL for bucket/key (a version; one part of a multipart object with
        `part_number`); `headers` (names in lower case) are signed and must be sent as given."""
        origin, prefix, region, service = self._base(bucket)
        creds = self.client._request_signer._credentials
        if creds is None:
            raise CannotSign("the source client has no credentials")
        frozen = creds.get_frozen_credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day = amz_date[:8]
        scope = f"{day}/{region}/{service}/aws4_request"
        signed = {"host": _host(origin), **headers}
        names = ";".join(sorted(signed))
        query = {"X-Amz-Algorithm": ALGORITHM, "X-Amz-Credential": f"{frozen.access_key}/{scope}",
                 "X-Amz-Date": amz_date, "X-Amz-Expires": str(expires), "X-Amz-SignedHeaders": names}
        if frozen.token:
            query["X-Amz-Security-Token"] = frozen.token
        if version_id:
            query["versionId"] = version_id
        if part_number is not None:
            query["partNumber"] = str(part_number)
        canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                                   for k, v in sorted(query.items()))
        path = prefix + quote(key, safe="/~")
        canonical = "\n".join([method, path, canonical_query,
                               "".join(f"{n}:{signed[n].strip()}\n" for n in sorted(signed)), names,
                               "UNSIGNED-PAYLOAD"])
        to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(frozen.secret_key, day, region, service), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        return f"{origin}{path}?{canonical_query}&X-Amz-Signature={signature}"

    def _base(self, bucket: str) -> tuple[str, str, str, str]:
        """(scheme://host, path before the key, region, service) of a bucket, from a URL
        botocore presigned for it."""
        if bucket not in self._bases:
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


def _host(origin: str) -> str:
    """The Host header as botocore signs it and aiohttp sends it: no default port."""
    scheme, _, netloc = origin.partition("://")
    return netloc.lower().removesuffix(_DEFAULT_PORTS.get(scheme, "\0"))
