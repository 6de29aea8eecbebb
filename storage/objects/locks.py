"""Object Lock: what makes a version undeletable, judged in one place.

A version carries its lock in its record, the same record every archive's trailer
repeats: `retention` ({"mode": GOVERNANCE|COMPLIANCE, "until": ISO 8601 UTC}) and
`legal_hold` ("ON"|"OFF"). Values set at PUT time (or the bucket's default retention)
are in the manifest; later changes are `retention` / `legal-hold` amendment records the
rebuild applies (objects/tagging.py), so the disks alone say what is locked.

Every path that removes a version for good (DeleteObject with a version id,
DeleteObjects, lifecycle, the migrator) goes through ObjectService.delete_version, which
asks `check_deletable` inside the index transaction that removes the row: a retention
committed a moment earlier by another request is always seen. A delete marker (a plain
DELETE) removes nothing and is always allowed, as in S3.
"""
from __future__ import annotations

import datetime as dt
import time

GOVERNANCE, COMPLIANCE = "GOVERNANCE", "COMPLIANCE"
MODES = (GOVERNANCE, COMPLIANCE)
ON, OFF = "ON", "OFF"
_DAY = 86400


class ObjectLocked(Exception):
    """The version is protected by Object Lock; S3 answers 403 AccessDenied."""


def parse_time(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 timestamp (S3's RetainUntilDate), None if it is not one."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        epoch = when.timestamp()
        format_time(epoch)   # a date S3 can write back (not past year 9999 in UTC)
    except (ValueError, AttributeError, OverflowError, OSError):
        return None
    return epoch


def format_time(epoch: float) -> str:
    """The form S3 returns retain-until dates in: `2026-12-03T10:00:00.000Z`."""
    when = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def retention(mode: str, until: float) -> dict:
    return {"mode": mode, "until": format_time(until)}


def default_retention(bucket: dict, now: float | None = None) -> dict | None:
    """The retention a new version of `bucket` gets from its default rule, if it has one."""
    rule = (bucket.get("object_lock") or {}).get("default")
    if not rule:
        return None
    days = rule.get("days") or 365 * (rule.get("years") or 0)
    return retention(rule["mode"], (time.time() if now is None else now) + days * _DAY)


def active_retention(record: dict | None, now: float | None = None) -> dict | None:
    """The record's retention if it still holds (its date is in the future)."""
    held = (record or {}).get("retention")
    if not held:
        return None
    until = parse_time(held.get("until", ""))
    if until is None or until <= (time.time() if now is None else now):
        return None
    return held


def why_locked(record: dict | None, bypass_governance: bool = False, now: float | None = None) -> str | None:
    """Why this version may not be deleted now, or None if it may."""
    if not record:
        return None
    if record.get("legal_hold") == ON:
        return "it is under a legal hold"
    held = active_retention(record, now)
    if held is None:
        return None
    if held["mode"] == GOVERNANCE and bypass_governance:
        return None
    return f"it is retained in {held['mode']} mode until {held['until']}"


def check_deletable(record: dict | None, bypass_governance: bool = False) -> None:
    reason = why_locked(record, bypass_governance)
    if reason:
        raise ObjectLocked(f"version {record.get('version_id')} of {record.get('bucket')}/{record.get('key')}: "
                           f"{reason}")


def check_retention_change(record: dict | None, new: dict | None, bypass_governance: bool) -> None:
    """May the retention of `record` become `new` (None: removed)? S3's rules: COMPLIANCE
    can only be extended, never weakened or removed; GOVERNANCE can be extended (or made
    COMPLIANCE) by the owner, and shortened or removed only with the bypass header."""
    held = active_retention(record)
    if held is None:
        return
    old_until = parse_time(held["until"])
    new_until = parse_time(new["until"]) if new else None
    shorter = new_until is None or new_until < old_until
    if held["mode"] == COMPLIANCE and (shorter or new["mode"] != COMPLIANCE):
        raise ObjectLocked(f"{held['mode']} retention until {held['until']} can only be extended")
    if held["mode"] == GOVERNANCE and shorter and not bypass_governance:
        raise ObjectLocked(f"GOVERNANCE retention until {held['until']} can be shortened or removed only with "
                           "x-amz-bypass-governance-retention: true")
