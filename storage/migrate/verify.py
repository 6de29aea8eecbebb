"""`pocket migrate verify`: every version compared between the source and Pocket.

Both sides are listed afresh (the source with its version ids, Pocket from the index)
and each version present on both is compared as a client would see it: size, ETag,
Last-Modified, content type, standard headers, user metadata, tags and x-amz-checksum-*
(the ETag and checksums are equal by construction after a copy, so any difference is
real). `--deep` (or `--sample P` for a random P % of versions) also reads both sides in
full and compares SHA-256 digests; Pocket's side is read through its own read path, so a
fragment that rotted behind our back is found (and queued for repair) even when the
object still decodes. `--fix` re-copies what is missing or different and checks it again.

The result goes into the bucket's migration record (`last_verify`), and keys written
since their last verify ("dirty", index/migrations.py) that compared equal are cleared,
unless they were written again meanwhile, and keys found different are marked dirty; cutover
needs a clean verify and no dirty key, and before it the gateway reads a key that is not
dirty after a verify from Pocket (routing.py).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time

from .. import layout
from ..index import migrations as M
from ..index.versions import NULL
from ..objects.get import Unreadable
from ..index import parts as P
from ..objects.ids import new_id
from ..throttle import Throttle
from ..verify import verify_archive
from . import copier, listing, presigned_get, settings, state
from .version_ids import internal_ids
from .copier import RateLimit, Wanted

log = logging.getLogger("pocket.migrate.verify")


class Verifier:
    def __init__(self, tc, objects, multipart, client, source_bucket: str, bucket: str, deep: bool = False,
                 sample: float | None = None, concurrency: int = 16):
        self.tc, self.objects, self.multipart, self.client = tc, objects, multipart, client
        self.source_bucket, self.bucket = source_bucket, bucket
        self.deep, self.sample = deep, sample
        self.sem = asyncio.Semaphore(max(1, concurrency))
        self.findings: list[dict] = []
        self.checked = self.deep_read = 0
        # HEADs (one per version) and deep reads by presigned URL: a quarter of botocore's CPU
        self.urls = presigned_get.PresignedGet(client, concurrency)

    async def run(self, fix: bool) -> dict:
        try:
            return await self._run(fix)
        finally:
            await self.urls.close()

    async def _run(self, fix: bool) -> dict:
        started = time.time()
        loop = asyncio.get_running_loop()
        versioning = await loop.run_in_executor(None, listing.versioning_of, self.client, self.source_bucket)
        dirty = self.tc.index.write(lambda ops: M.dirty(ops, self.bucket))
        source = await loop.run_in_executor(None, listing.list_bucket, self.client, self.source_bucket, bool(versioning))
        theirs = {(e.key, e.version_id): e for e in source}
        self.history: dict[str, list[str]] = {}
        for e in source:
            self.history.setdefault(e.key, []).append(e.version_id)     # newest first
        ours = {(v.key, v.version_id): v.record for v in self.tc.index.iter_versions(self.bucket)} \
            if self.tc.index.get_bucket(self.bucket) else {}
        for where in sorted(set(ours) - set(theirs)):
            self.findings.append({"key": where[0], "version_id": where[1], "problem": "extra",
                                  "why": "in Pocket, not at the source"})
        await asyncio.gather(*(self._one(e, ours.get(where)) for where, e in theirs.items()))
        fixed = await self._fix(theirs, ours) if fix and self.findings else 0
        bad = {f["key"] for f in self.findings}
        cleared = sum(self.tc.index.write(lambda ops, k=k, s=s: M.clear_dirty(ops, self.bucket, k, s))
                      for k, s in dirty if k not in bad)
        if bad:   # read from the source, not Pocket, until a verify finds them equal (routing.py)
            self.tc.index.write(lambda ops: [M.mark_dirty(ops, self.bucket, k) for k in sorted(bad)])
        report = {"bucket": self.bucket, "checked": self.checked, "deep_read": self.deep_read,
                  "deep": self.deep, "sample": self.sample, "findings": self.findings[:1000],
                  "missing": sum(f["problem"] == "missing" for f in self.findings),
                  "mismatched": sum(f["problem"] not in ("missing",) for f in self.findings),
                  "fixed": fixed, "dirty_cleared": cleared, "clean": not self.findings,
                  "read_presigned": self.urls.served,     # source HEADs and reads answered by URLs
                  "seconds": round(time.time() - started, 3)}
        self._record(report)
        return report

    async def _one(self, e, record: dict | None) -> None:
        async with self.sem:
            self.checked += 1
            problem = await self._compare(e, record)
            if problem:
                self.findings.append({"key": e.key, "version_id": e.version_id, **problem})

    async def _compare(self, e, record: dict | None) -> dict | None:
        if record is None:
            return {"problem": "missing", "why": "at the source, not in Pocket"}
        if e.delete_marker or record.get("delete_marker"):
            if bool(e.delete_marker) != bool(record.get("delete_marker")):
                return {"problem": "different", "why": "a delete marker on one side only"}
            return None
        mine = {"size": record["size"], "etag": record["etag"]}
        theirs = {"size": e.size, "etag": e.etag}
        if mine != theirs:
            return {"problem": "different", "why": f"Pocket has {mine}, the source {theirs}"}
        head = await self._head(e)
        tags = await copier.tags_of(self.client, self.source_bucket, e, head)
        want = copier.attrs_of(head, tags, e, e.version_id != NULL)
        for name in ("content_type", "meta", "headers"):
            if record.get(name, {} if name != "content_type" else None) != want[name]:
                return {"problem": "different", "why": f"{name}: Pocket has {record.get(name)!r}, the source "
                                                       f"{want[name]!r}"}
        if (record.get("tags") or {}) != tags:
            return {"problem": "different", "why": f"tags: Pocket has {record.get('tags')}, the source {tags}"}
        if abs(record.get("created", 0) - want["created"]) >= 1.0:
            return {"problem": "different", "why": "Last-Modified differs"}
        for algorithm, value in copier._checksums(head).items():
            if (record.get("checksums") or {}).get(algorithm) != value:
                return {"problem": "different", "why": f"x-amz-checksum-{algorithm} differs"}
        if self.deep or (self.sample and random.random() * 100 < self.sample):
            return await self._read_both(e, record)
        return None

    async def _head(self, e) -> dict:
        got = await self.urls.head(self.source_bucket, e.key, e.version_id if e.version_id != NULL else None)
        if got is None:
            got = await copier._call(self.client.head_object, Bucket=self.source_bucket, Key=e.key,
                                     ChecksumMode="ENABLED", **copier._version_arg(e))
            self.urls.botocore_answered(f"{self.source_bucket}/{e.key}")
        return got

    async def _read_both(self, e, record: dict) -> dict | None:
        """SHA-256 of both sides' bytes; Pocket's through its read path (checksums, decode)."""
        self.deep_read += 1
        try:
            got = await copier.source_get(self.client, self.urls, self.source_bucket, e)
        except copier.SourceChanged as err:
            return {"problem": "different", "why": f"the source changed while verified: {err}"}
        except self.client.exceptions.ClientError as err:
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") not in (404, 412):
                raise
            return {"problem": "different", "why": "the source changed while verified (it answered "
                                                   f"{err.response['ResponseMetadata']['HTTPStatusCode']})"}
        theirs = hashlib.sha256()
        if isinstance(got["Body"], bytes):        # a small object, read whole
            theirs.update(got["Body"])
        else:
            async for chunk in copier._stream(got["Body"], RateLimit(0), [0]):
                theirs.update(chunk)
        mine = hashlib.sha256()
        try:
            async for chunk in self.objects.read(record, 0, record["size"] - 1):
                mine.update(chunk)
        except Unreadable as err:
            return {"problem": "unreadable", "why": f"Pocket cannot read it: {err}"}
        if mine.digest() != theirs.digest():
            return {"problem": "different", "why": "the bytes differ (SHA-256)"}
        bad = await self._check_fragments(record)
        if bad:
            return {"problem": "damaged", "why": f"{bad} fragment(s) corrupt or missing in Pocket (the read went "
                                                 "around them); queued for repair"}
        return None

    async def _check_fragments(self, record: dict) -> int:
        """Every fragment archive of the version, parity included (a read uses only k of
        them), checked as the scrubber does; damage goes to the repair queue."""
        found = 0
        for piece in (P.part_record(record, p) for p in record["parts"]) if P.is_multipart(record) else [record]:
            volume = self.tc.cluster.volumes.get(piece["volume"])
            if volume is None or not piece.get("size"):
                continue
            bad = {}
            for i, disk_id in enumerate(volume["disks"]):
                name = layout.archive_name(piece["version_id"], i)
                disk = self.tc.cluster.disks[disk_id]
                try:
                    size = await disk.stat(name)
                    verdict = None if size is None else await verify_archive(disk, name, size, Throttle(0))
                except FileNotFoundError:
                    size = None
                except Exception as e:      # a disk that does not answer is the heartbeat's business
                    log.warning("verify: could not check %s on %s: %r", name, disk_id, e)
                    continue
                if size is None:
                    bad[i] = ("missing", "not on its disk (found by migrate verify)")
                elif verdict.problem:
                    bad[i] = ("corrupt", f"{verdict.problem} (found by migrate verify)")
            if bad:
                await self.tc.queue.add(piece, bad, "verify")
                found += len(bad)
        return found

    async def _fix(self, theirs: dict, ours: dict) -> int:
        """Re-copy every missing or different version, then compare it again."""
        limit, moved, fixed = RateLimit(0), [0], 0
        for f in list(self.findings):
            if f["problem"] == "extra":
                continue             # Pocket never deletes on its own: an operator's call
            e = theirs[(f["key"], f["version_id"])]
            old = ours.get((e.key, e.version_id))
            if old is not None and e.version_id != NULL:
                await self.objects.delete_version(self.bucket, e.key, e.version_id)
            internal = self._fix_id(e, old, ours)
            w = Wanted(e.key, e.version_id, e.delete_marker, e.size, e.etag, e.last_modified, internal)
            try:
                await copier.copy_version(self.objects, self.multipart, self.client, self.source_bucket,
                                          self.bucket, w, limit, moved)
            except Exception as err:
                f["fix"] = f"failed: {err!r}"[:300]
                continue
            record = self.tc.index.get_version(self.bucket, e.key, e.version_id)
            again = await self._compare(e, record)
            if again is None and self.deep is False:
                again = await self._read_both(e, record) if not e.delete_marker else None
            if again is None:
                self.findings.remove(f)
                fixed += 1
            else:
                f["fix"] = f"still {again['problem']}: {again['why']}"
        return fixed

    def _fix_id(self, e, old: dict | None, ours: dict) -> str:
        """The internal id of a re-copy: just after the version it replaces (so it wins over
        it and its tombstone, yet stays before newer writes); for a lost version of a
        history, between its neighbours still in Pocket; for a lost unversioned object,
        after whatever deleted it: now."""
        if old is not None:
            return f"{int(old['version_id'][:16], 16) + 1:016x}{new_id()[16:]}"
        if e.version_id == NULL:
            return new_id()
        vids = self.history.get(e.key, [])
        at = vids.index(e.version_id)
        ns = lambda vid: int(ours[(e.key, vid)]["version_id"][:16], 16)  # noqa: E731
        newer = next((ns(v) for v in reversed(vids[:at]) if (e.key, v) in ours), None)
        older = next((ns(v) for v in vids[at + 1:] if (e.key, v) in ours), None)
        if older is not None and newer is not None and newer - older > 1:
            return f"{(older + newer) // 2:016x}{new_id()[16:]}"
        if older is not None:
            return f"{older + 1:016x}{new_id()[16:]}"
        if newer is not None:
            return f"{newer - 1:016x}{new_id()[16:]}"
        return internal_ids([{"last_modified": e.last_modified}])[0]

    def _record(self, report: dict) -> None:
        summary = {k: report[k] for k in ("checked", "missing", "mismatched", "deep", "clean", "fixed")}
        summary["at"] = time.time()

        def update(ops):
            m = state.get(ops, self.bucket)
            if m is None:
                return
            m.last_verify = summary
            if report["clean"] and m.state == state.BACKFILLED:
                state.move(ops, self.bucket, state.VERIFIED, "verify clean")
                m = state.get(ops, self.bucket)
                m.last_verify = summary
            elif not report["clean"] and m.state == state.VERIFIED:
                state.move(ops, self.bucket, state.BACKFILLED, "verify found differences")
                m = state.get(ops, self.bucket)
                m.last_verify = summary
            state.put(ops, m)
        self.tc.index.write(update)


def _fix_id(e, old: dict | None) -> str:
    """The internal id of a re-copy: just after the version it replaces (so it wins over
    it and over its tombstone, yet stays before newer writes), or for a version Pocket
    lost, after anything that deleted it: now."""
    if old is not None:
        return f"{int(old['version_id'][:16], 16) + 1:016x}{new_id()[16:]}"
    if e.version_id == NULL:
        return new_id()
    return internal_ids([{"last_modified": e.last_modified}])[0]


async def run(cfg, tc, objects, multipart, buckets, args: dict, deep: bool, sample: float | None, fix: bool,
              concurrency: int = 16) -> dict:
    out = []
    for source_bucket, target in settings.targets(buckets, args.get("target")):
        src, record, keys_file = settings.resolve(cfg, tc.index, source_bucket, target, args)
        client = settings.client_for(src, keys_file, concurrency)
        listing.keep_version_order(client)
        v = Verifier(tc, objects, multipart, client, source_bucket, target, deep, sample, concurrency)
        out.append(await v.run(fix))
    return {"buckets": out, "clean": all(b["clean"] for b in out)}
