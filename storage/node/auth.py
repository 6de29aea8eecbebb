"""HMAC authentication of the internal node API.

Every request between gateway and node carries an HMAC over the method, the path with
its query, and a timestamp, keyed by the cluster secret. Bodies are not covered: each
record inside an archive has its own checksum, and a node only commits an archive whose
footer checks out. A request without a valid HMAC gets 403 and touches nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import time

TIME_HEADER = "X-Pocket-Time"
AUTH_HEADER = "X-Pocket-Auth"
MAX_SKEW = 300


def sign(secret: str, method: str, path_qs: str, now: float | None = None) -> dict[str, str]:
    stamp = str(int(now if now is not None else time.time()))
    mac = hmac.new(secret.encode(), f"{method}\n{path_qs}\n{stamp}".encode(), hashlib.sha256)
    return {TIME_HEADER: stamp, AUTH_HEADER: mac.hexdigest()}


def verify(secret: str, method: str, path_qs: str, headers) -> bool:
    stamp, given = headers.get(TIME_HEADER, ""), headers.get(AUTH_HEADER, "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > MAX_SKEW:
        return False
    want = sign(secret, method, path_qs, int(stamp))[AUTH_HEADER]
    return hmac.compare_digest(want, given)
