"""Authentication of the internal node API: a captured request can be neither replayed
nor given another body.

Every request carries an HMAC (a key derived from the cluster secret) over the method,
the path with its query, the id of the node it is meant for, a timestamp in
milliseconds and a random nonce. A node refuses with 403, touching nothing, a request
whose MAC is wrong, whose timestamp is more than MAX_SKEW away from its clock or older
than its own start (its replay cache is empty then), or whose nonce it has already seen
(`ReplayCache`).

Bodies are covered by a tag that travels *after* the body, as its last TAG_SIZE bytes.
A header would need the digest before the first byte is sent, but the gateway streams
archives while it encodes them (a 5 GiB part is never held in memory), and aiohttp has
no chunked-trailer support on either side; an in-band trailer works with any HTTP
framing. A record's tag is HMAC(key, request MAC || body); an archive's covers its
skeleton only, since its record payloads carry keyed checksums of their own
(archive_tag.py). The node checks the tag as the body streams in and only commits
(renames the archive into place, appends it or the record to a pack) once it matches;
otherwise the upload is dropped like a broken one. Only PUT carries a body; any other
request with a body is refused.

Every request names the version of this scheme (LINK_HEADER) and the key is derived for
that version, so a gateway and a node of different versions refuse each other loudly,
with a message that says so, instead of one accepting what the other did not check.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import secrets
import time

from ..integrity import derive

TIME_HEADER = "X-Pocket-Time"
NONCE_HEADER = "X-Pocket-Nonce"
NODE_HEADER = "X-Pocket-Node"
AUTH_HEADER = "X-Pocket-Auth"
LINK_HEADER = "X-Pocket-Link"
LINK_VERSION = "7"          # 7: removals without an fsync of their own (batch.FORGET, which a node
                            # of 6 refuses with the whole batch it rides in);
                            # 6: small reads and stats in fetches (fetch.py); 5: archives and packs in
                            # format 3 (keyed BLAKE3); 4: batches (batch.py),
                            # streamed ranges; 3: an archive's tag covers its skeleton
MAX_SKEW = 300.0            # seconds a request may be early or late
TAG_SIZE = 32


class BadBody(Exception):
    """A body whose tag is missing or wrong: forged, cut short, or signed for another request."""


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC that has absorbed the link key, copied for each MAC: deriving the key (an
    HMAC of its own) and padding it again for every request and body tag was ~5 % of
    both ends' samples of a repair's small requests (py-spy --gil)."""
    return hmac.new(derive(secret, f"node-api/v{LINK_VERSION}"), digestmod=hashlib.sha256)


def _hmac(secret: str, msg: bytes) -> hmac.HMAC:
    h = _keyed(secret).copy()
    h.update(msg)
    return h


def _mac(secret: str, method: str, path_qs: str, node_id: str, stamp: str, nonce: str) -> str:
    return _hmac(secret, "\n".join((method, path_qs, node_id, stamp, nonce)).encode()).hexdigest()


def sign(secret: str, method: str, path_qs: str, node_id: str, now: float | None = None,
         nonce: str | None = None) -> dict[str, str]:
    stamp = str(int((now if now is not None else time.time()) * 1000))
    nonce = nonce or secrets.token_hex(16)
    return {LINK_HEADER: LINK_VERSION, TIME_HEADER: stamp, NONCE_HEADER: nonce, NODE_HEADER: node_id,
            AUTH_HEADER: _mac(secret, method, path_qs, node_id, stamp, nonce)}


class ReplayCache:
    """Nonces seen within the window, bounded: past `limit` the oldest are dropped and
    requests no newer than them are refused from then on (`floor`), so a dropped nonce
    can never be replayed. The floor starts at the node's start: nonces seen by an
    earlier run are not remembered."""

    def __init__(self, limit: int = 250_000, window: float = MAX_SKEW):
        self.limit, self.window = limit, window
        self.floor = int(time.time() * 1000) - 1   # requests signed before this run are refused
        self._seen: collections.OrderedDict[str, int] = collections.OrderedDict()

    def admit(self, nonce: str, stamp: int) -> str | None:
        """None if the request is fresh (and remember its nonce), else why not."""
        cutoff = int((time.time() - self.window) * 1000)   # older ones fail the clock check anyway
        while self._seen:
            _, seen_stamp = next(iter(self._seen.items()))
            if len(self._seen) >= self.limit:
                self.floor = max(self.floor, seen_stamp)
            elif seen_stamp >= cutoff:
                break
            self._seen.popitem(last=False)
        if stamp <= self.floor:
            return "timestamp older than the node's replay memory (node restarted, or too many requests)"
        if nonce in self._seen:
            return "nonce already used (a replayed request)"
        self._seen[nonce] = stamp
        return None


def verify(secret: str, method: str, path_qs: str, node_id: str, headers, replay: ReplayCache) -> str | None:
    """None if the request is authentic, fresh and meant for `node_id`; else why it is refused."""
    return authentic(secret, method, path_qs, node_id, headers) or \
        replay.admit(headers[NONCE_HEADER], int(headers[TIME_HEADER]))


def authentic(secret: str, method: str, path_qs: str, node_id: str, headers) -> str | None:
    """`verify` without the replay check, for a receiver whose nonces outlive one process
    (the gateway keeps them in the index: storage/migrate/gateway_copy.py)."""
    link = headers.get(LINK_HEADER, "")
    if link != LINK_VERSION:
        return (f"the request speaks node link {link[:8]!r} (none: 2 or older), this node {LINK_VERSION!r}: "
                "run the same Pocket release on every gateway and node")
    stamp, nonce = headers.get(TIME_HEADER, ""), headers.get(NONCE_HEADER, "")
    given, for_node = headers.get(AUTH_HEADER, ""), headers.get(NODE_HEADER, "")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) < 16) or not 16 <= len(nonce) <= 64:
        return "missing or malformed timestamp or nonce"
    want = _mac(secret, method, path_qs, for_node, stamp, nonce)
    if not hmac.compare_digest(want, given):
        return "bad MAC (check that every process has the same cluster_secret)"
    if for_node != node_id:
        return f"request signed for node {for_node!r}, this is {node_id!r}"
    if abs(time.time() - int(stamp) / 1000) > MAX_SKEW:
        return f"timestamp more than {MAX_SKEW:.0f}s away from this node's clock (check NTP)"
    return None


def _tagger(secret: str, request_mac: str):
    return _hmac(secret, b"body\n" + request_mac.encode())


def archive_tagger(secret: str, request_mac: str):
    """The HMAC an archive's skeleton is fed to (archive_tag.py): keyed apart from a whole
    body's, so neither tag is ever valid as the other."""
    return _hmac(secret, b"archive-skeleton\n" + request_mac.encode())


def tag(secret: str, headers: dict[str, str], body: bytes) -> bytes:
    h = _tagger(secret, headers[AUTH_HEADER])
    h.update(body)
    return body + h.digest()


def check_tagged(secret: str, headers, raw: bytes) -> bytes:
    """A whole tagged body, checked; returns it without the tag."""
    body, given = raw[:-TAG_SIZE], raw[-TAG_SIZE:]
    h = _tagger(secret, headers.get(AUTH_HEADER, ""))
    h.update(body)
    if len(raw) < TAG_SIZE or not hmac.compare_digest(h.digest(), given):
        raise BadBody("body tag missing or wrong: the body is not the one this request was signed with")
    return body
