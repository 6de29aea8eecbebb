"""The lifecycle pass: apply every bucket's rules (rules.py) to what the index holds.

One pass walks each bucket that has rules: current objects past their Expiration are
deleted with the object service's ordinary delete (tombstone on the disks, then the
index; a delete marker once buckets are versioned), incomplete multipart uploads past
AbortIncompleteMultipartUpload are aborted (their parts' fragments reclaimed), and
noncurrent versions and expired delete markers of versioned buckets go through
`expire_versions`. A version Object Lock protects is never expired: it is skipped and
counted (`locked_skipped`), judged again inside the index transaction of the delete.

Bounded: the index is read a page at a time, each page in its own short read
transaction, never across an await; deletes and aborts are paced to `rate` per second.
Restart-safe: a pass only removes what the rules say has expired, each removal is durable
on its own, and nothing is remembered between passes, so a crash mid-pass leaves the
rest for the next pass, which finds it again.

Runs in the gateway every `lifecycle.interval` seconds and as `pocket lifecycle`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field

from ..index.ops import NoSuchBucket
from ..index.uploads import NoSuchUpload
from ..index.versions import is_marker
from ..leased import every
from ..objects import locks
from . import rules

log = logging.getLogger("pocket.lifecycle")

PAGE = 1000
MAX_LISTED = 1000   # actions listed one by one in a report; the counters go on
MAX_ERRORS = 10     # failed removals after which a pass gives up


class PassStopped(Exception):
    """Too many removals failed in one pass; the rest waits for the next."""


@dataclass
class LifecycleReport:
    dry_run: bool = False
    buckets: int = 0
    objects_scanned: int = 0
    objects_expired: int = 0
    uploads_aborted: int = 0
    versions_expired: int = 0
    locked_skipped: int = 0   # versions a rule would expire that Object Lock protects
    errors: int = 0
    actions: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def note(self, **action) -> None:
        if len(self.actions) < MAX_LISTED:
            self.actions.append(action)

    def as_dict(self) -> dict:
        return asdict(self)


class LifecycleRunner:
    def __init__(self, objects, multipart, day_seconds: float = rules.DAY, rate: float = 100.0,
                 metrics=None, page: int = PAGE):
        self.objects, self.multipart = objects, multipart
        self.index = objects.index
        self.day_seconds, self.rate, self.metrics, self.page = day_seconds, rate, metrics, page
        self.passes = 0

    async def run_forever(self, interval: float) -> None:
        await every(interval, self._logged_pass, "lifecycle pass")

    async def _logged_pass(self) -> None:
        """One line per pass, work or not, so the log shows the passes run."""
        report = await self.run_once()
        log.info("lifecycle pass: %d objects expired, %d uploads aborted, %d versions expired "
                 "in %d buckets (%.1fs)", report.objects_expired, report.uploads_aborted,
                 report.versions_expired, report.buckets, report.seconds)

    async def run_once(self, now: float | None = None, dry_run: bool = False) -> LifecycleReport:
        """One pass over every bucket with enabled rules, judged at `now` (default: the clock)."""
        started = time.monotonic()
        report = LifecycleReport(dry_run=dry_run)
        for bucket in await self.index.call(self.index.list_buckets):
            active = rules.enabled(bucket.get("lifecycle"))
            if not active:
                continue
            report.buckets += 1
            when = time.time() if now is None else now
            try:
                await self._expire_objects(bucket["name"], active, when, report)
                await self._abort_uploads(bucket["name"], active, when, report)
                await self.expire_versions(bucket["name"], active, when, report)
            except NoSuchBucket:
                continue   # deleted while we worked on it
            except PassStopped as e:
                log.error("lifecycle pass stopped in bucket %s: %s (are disks down?); the next pass "
                          "starts over", bucket["name"], e)
                break
        self.passes += 1
        if self.metrics and not dry_run:
            self.metrics.lifecycle_passes.inc()
        report.seconds = time.monotonic() - started
        return report

    def _failed(self, report: LifecycleReport, what: str) -> None:
        """Count a failed removal; past MAX_ERRORS the pass stops (disks down: every removal
        would fail the same way) and the next one starts over."""
        report.errors += 1
        log.warning("lifecycle: %s; the next pass retries", what)
        if report.errors >= MAX_ERRORS:
            raise PassStopped(f"{report.errors} removals failed")

    async def _pace(self) -> None:
        await asyncio.sleep(1 / self.rate if self.rate else 0)

    async def _expire_objects(self, bucket: str, active: list[dict], now: float, report: LifecycleReport) -> None:
        expiring = [r for r in active if {"days", "at"} & set(r.get("expiration") or {})]
        for prefix in rules.scan_prefixes(expiring):
            await self._expire_under(bucket, prefix, expiring, now, report)

    async def _expire_under(self, bucket: str, prefix: str, expiring: list[dict], now: float,
                            report: LifecycleReport) -> None:
        marker = ""
        while True:
            page = await self.index.call(self.index.list_objects, bucket, prefix=prefix, start_after=marker,
                                         max_keys=self.page)
            for key, record in page.contents:
                report.objects_scanned += 1
                hit = rules.current_expiry(expiring, key, record["size"], record.get("tags"), record["created"],
                                           self.day_seconds)
                if hit is None or hit.at > now:
                    continue
                report.note(action="expire", bucket=bucket, key=key, version_id=record["version_id"],
                            rule=hit.rule_id)
                if report.dry_run:
                    report.objects_expired += 1
                    continue
                if await self._delete_current(bucket, key, record["version_id"], report):
                    report.objects_expired += 1
                    if self.metrics:
                        self.metrics.lifecycle_expired.labels("current").inc()
                await self._pace()
            if not page.is_truncated:
                return
            marker = page.next_marker
            await asyncio.sleep(0)

    async def _delete_current(self, bucket: str, key: str, version_id: str, report: LifecycleReport) -> bool:
        """Expire bucket/key if the version judged expired is still the current one.

        The object service checks that again inside the index commit (`if_version`), so a
        PUT committed meanwhile, through this gateway or beside the one-shot `pocket
        lifecycle`, is never deleted. As S3 does: a never-versioned bucket's object is
        deleted; with versioning Enabled a delete marker hides it (still readable by
        version id, and NoncurrentVersionExpiration takes it later); Suspended, a null
        delete marker replaces the null version."""
        try:
            return await self.objects.delete(bucket, key, if_version=version_id) is not None
        except Exception as e:
            self._failed(report, f"could not delete {bucket}/{key} ({e!r})")
            return False

    async def _abort_uploads(self, bucket: str, active: list[dict], now: float, report: LifecycleReport) -> None:
        aborting = [r for r in active if r.get("abort_days")]
        for prefix in rules.scan_prefixes(aborting):
            await self._abort_under(bucket, prefix, aborting, now, report)

    async def _abort_under(self, bucket: str, prefix: str, aborting: list[dict], now: float,
                           report: LifecycleReport) -> None:
        key_marker = upload_marker = ""
        while True:
            page = await self.index.call(self.multipart.list_uploads, bucket, prefix=prefix, key_marker=key_marker,
                                         upload_id_marker=upload_marker, max_uploads=self.page)
            for upload in page.uploads:
                hit = rules.upload_abort(aborting, upload["key"], upload["initiated"], self.day_seconds)
                if hit is None or hit.at > now:
                    continue
                report.note(action="abort", bucket=bucket, key=upload["key"], upload_id=upload["upload_id"],
                            rule=hit.rule_id)
                if report.dry_run:
                    report.uploads_aborted += 1
                    continue
                try:
                    await self.multipart.abort(upload)
                    report.uploads_aborted += 1
                    if self.metrics:
                        self.metrics.lifecycle_aborted.inc()
                except NoSuchUpload:
                    pass   # completed or aborted meanwhile
                except Exception as e:
                    self._failed(report, f"could not abort upload {upload['upload_id']} of {bucket}/{upload['key']} "
                                         f"({e!r})")
                await self._pace()
            if not page.is_truncated:
                return
            key_marker, upload_marker = page.next_key_marker, page.next_upload_id_marker
            await asyncio.sleep(0)

    async def expire_versions(self, bucket: str, active: list[dict], now: float, report: LifecycleReport) -> None:
        """NoncurrentVersionExpiration and expired delete markers, in versioned buckets.

        Each key's versions (newest first, paged by `Index.iter_versions`) go to
        `rules.expired_versions`; each version it names is removed for good with a
        version-specific delete (no new delete marker) of exactly that internal version,
        so a version written after the look is never the one removed."""
        relevant = [r for r in active
                    if r.get("noncurrent") or {"delete_marker", "days"} & set(r.get("expiration") or {})]
        if not relevant or not ((await self.index.call(self.index.get_bucket, bucket)) or {}).get("versioning"):
            return
        for prefix in rules.scan_prefixes(relevant):
            key, versions = None, []
            async for version in self.index.aiter_versions(bucket, prefix=prefix, batch=self.page):
                if version.key != key and versions:
                    await self._expire_key(bucket, key, versions, relevant, now, report)
                    versions = []
                key = version.key
                versions.append(version)
            if versions:
                await self._expire_key(bucket, key, versions, relevant, now, report)

    async def _expire_key(self, bucket: str, key: str, versions: list, relevant: list[dict], now: float,
                          report: LifecycleReport) -> None:
        listed = [{"version_id": v.version_id, "created": v.record["created"], "size": v.record.get("size", 0),
                   "tags": v.record.get("tags"), "delete_marker": is_marker(v.record), "record": v.record}
                  for v in versions]
        for version, rule_id in rules.expired_versions(relevant, key, listed, now, self.day_seconds):
            kind = "delete_marker" if version is listed[0] else "noncurrent"   # the latest: a lone marker
            if locks.why_locked(version["record"]):   # never expired while locked; judged again at the delete
                report.locked_skipped += 1
                continue
            report.note(action="expire-version", bucket=bucket, key=key, version_id=version["version_id"],
                        delete_marker=version["delete_marker"], rule=rule_id)
            if report.dry_run:
                report.versions_expired += 1
                continue
            try:
                removed = await self.objects.delete_version(bucket, key, version["version_id"],
                                                            expect=version["record"]["version_id"])
            except locks.ObjectLocked:   # a retention or legal hold set since the look
                report.locked_skipped += 1
                removed = None
            except Exception as e:
                self._failed(report, f"could not expire version {version['version_id']} of {bucket}/{key} ({e!r})")
                removed = None
            if removed is not None:
                report.versions_expired += 1
                if self.metrics:
                    self.metrics.lifecycle_expired.labels(kind).inc()
            await self._pace()
