"""Which lifecycle rule applies to an object, a version or an upload, and when it expires.

Pure functions over the stored rules (s3/lifecycle_xml.py parses S3's XML into them), so
the background runner, the `x-amz-expiration` response header and the tests all agree.
Time follows S3: an action "Days" after an event happens at the first midnight UTC at or
after event + Days (S3 rounds up to the next midnight); a Date is that midnight itself.
`day_seconds` is the length of a "day" (86400; tests shrink it like Ceph RGW's
rgw_lc_debug_interval), and days are counted from the epoch in those units.

A stored rule:

    {"id": str, "status": "Enabled" | "Disabled",
     "filter": {"prefix": str, "tags": {k: v}, "size_gt": int | None, "size_lt": int | None},
     "expiration": {"days": n} | {"date": iso, "at": epoch} | {"delete_marker": bool},   (optional)
     "noncurrent": {"days": n, "newer": n | None},                                       (optional)
     "abort_days": n}                                                                    (optional)

Versions (for versioned buckets) are dicts with "version_id", "created", "size", "tags"
and "delete_marker", newest first; the first is the current version. A version becomes
noncurrent when the next newer one is created.
"""
from __future__ import annotations

import math
from typing import NamedTuple

DAY = 86400.0


class Expiry(NamedTuple):
    at: float        # epoch seconds
    rule_id: str


def after_days(event: float, days: int, day_seconds: float = DAY) -> float:
    """event + days, rounded up to the next "midnight" (a multiple of day_seconds)."""
    return math.ceil((event + days * day_seconds) / day_seconds) * day_seconds


def enabled(rules: list[dict] | None) -> list[dict]:
    return [r for r in rules or () if r.get("status") == "Enabled"]


def matches(rule: dict, key: str, size: int | None = None, tags: dict | None = None) -> bool:
    """Does the rule's filter select this object? (size None: an upload, which has none yet)."""
    f = rule.get("filter") or {}
    if not key.startswith(f.get("prefix") or ""):
        return False
    tags = tags or {}
    if any(tags.get(k) != v for k, v in (f.get("tags") or {}).items()):
        return False
    if size is not None:
        if f.get("size_gt") is not None and not size > f["size_gt"]:
            return False
        if f.get("size_lt") is not None and not size < f["size_lt"]:
            return False
    return True


def scan_prefixes(some: list[dict]) -> list[str]:
    """The fewest key prefixes whose listing covers every key these rules can select:
    a pass over a bucket whose rules all name prefixes reads only those keys."""
    prefixes = sorted({(r.get("filter") or {}).get("prefix") or "" for r in some})
    out: list[str] = []
    for p in prefixes:
        if not any(p.startswith(q) for q in out):
            out.append(p)
    return out


def _earliest(hits) -> Expiry | None:
    hits = [h for h in hits if h is not None]
    return min(hits) if hits else None


def current_expiry(rules: list[dict] | None, key: str, size: int, tags: dict | None, created: float,
                   day_seconds: float = DAY) -> Expiry | None:
    """When the current version of key expires (Expiration Days or Date), and by which rule."""
    def one(rule):
        exp = rule.get("expiration") or {}
        if not matches(rule, key, size, tags):
            return None
        if "days" in exp:
            return Expiry(after_days(created, exp["days"], day_seconds), rule["id"])
        if "at" in exp:
            return Expiry(exp["at"], rule["id"])
        return None
    return _earliest(one(r) for r in enabled(rules))


def upload_abort(rules: list[dict] | None, key: str, initiated: float, day_seconds: float = DAY) -> Expiry | None:
    """When an incomplete multipart upload is aborted (AbortIncompleteMultipartUpload)."""
    return _earliest(Expiry(after_days(initiated, r["abort_days"], day_seconds), r["id"])
                     for r in enabled(rules) if r.get("abort_days") and matches(r, key))


def noncurrent_expiry(rules: list[dict] | None, key: str, size: int, tags: dict | None, noncurrent_since: float,
                      newer_noncurrent: int, day_seconds: float = DAY) -> Expiry | None:
    """When a noncurrent version expires: NoncurrentDays after it became noncurrent, once at
    least NewerNoncurrentVersions noncurrent versions newer than it exist (those are kept)."""
    def one(rule):
        nc = rule.get("noncurrent")
        if not nc or not matches(rule, key, size, tags):
            return None
        if nc.get("newer") and newer_noncurrent < nc["newer"]:
            return None
        return Expiry(after_days(noncurrent_since, nc["days"], day_seconds), rule["id"])
    return _earliest(one(r) for r in enabled(rules))


def expires_delete_marker(rules: list[dict] | None, key: str, created: float | None = None,
                          now: float | None = None, day_seconds: float = DAY) -> str | None:
    """The rule that removes an expired object delete marker of key (one with no noncurrent
    versions left behind it), or None.

    ExpiredObjectDeleteMarker removes it at once; an Expiration Days rule does once the
    marker (made at `created`) is that old, as S3 does ("When you specify the Days tag,
    Amazon S3 automatically performs ExpiredObjectDeleteMarker cleanup when the delete
    markers are old enough to satisfy the age criteria")."""
    for rule in enabled(rules):
        if (rule.get("expiration") or {}).get("delete_marker") and matches(rule, key):
            return rule["id"]
    if created is None or now is None:
        return None
    for rule in enabled(rules):
        days = (rule.get("expiration") or {}).get("days")
        if days and matches(rule, key) and after_days(created, days, day_seconds) <= now:
            return rule["id"]
    return None


def expired_versions(rules: list[dict] | None, key: str, versions: list[dict], now: float,
                     day_seconds: float = DAY) -> list[tuple[dict, str]]:
    """(version, rule id) of every version of key a pass at `now` removes for good:
    noncurrent versions (delete markers included) past NoncurrentVersionExpiration, and
    the current delete marker when it is the only version left (an expired delete marker).

    Expiring the *current* version is not here: that is `current_expiry`, applied with
    a normal delete (a delete marker in a versioned bucket)."""
    out = []
    for i, version in enumerate(versions[1:], start=1):
        hit = noncurrent_expiry(rules, key, version.get("size", 0), version.get("tags"),
                                versions[i - 1]["created"], i - 1, day_seconds)
        if hit is not None and hit.at <= now:
            out.append((version, hit.rule_id))
    if versions and versions[0].get("delete_marker") and len(versions) == 1:
        rule_id = expires_delete_marker(rules, key, versions[0]["created"], now, day_seconds)
        if rule_id is not None:
            out.append((versions[0], rule_id))
    return out
