"""`pocket migrate verify`: every version compared between the source and Pocket.

Three tiers, each checking what the one before does and more (README, "Leaving S3"):

- **listing** (`--quick`): one listing of each side, the source's (with its version ids)
  and Pocket's index. Every version and delete marker must be on both sides with the same
  size, ETag and Last-Modified. The ETag is equal by construction after a copy, multipart
  objects included (part boundaries are kept), so a difference is real; `rclone check`
  compares size and MD5, and multipart objects by size only. Keys written through the
  gateway since their last verify ("dirty", index/migrations.py) are also compared as in
  the next tier: those are where Pocket's metadata or tags can have moved.
- **attrs** (the default): also a HEAD (and GetObjectTagging when the source counts tags) of every
  version: content type, standard headers, user metadata, tags and x-amz-checksum-*. What
  the listing tier cannot see: tags changed at the source behind the migrator's back (S3
  changes neither ETag nor Last-Modified for that). Metadata at the source changes only
  with a new write, which the listing tier sees by its Last-Modified.
- **`--deep`** (or `--sample P` for a random P % of versions): the default, and both sides
  read in full at once and compared byte for byte; Pocket's side through its own read path
  and every fragment archive (parity included) checked, so a fragment that rotted behind
  our back is found (and queued for repair) even when the object still decodes. A
  single-PUT version is read with one GET, whose headers are the HEAD's (as the copy
  does). Comparing the bytes themselves, not a SHA-256 of each side, is stronger and
  cheaper: hashing both sides was ~0.3 s of CPU per 128 MiB, the comparison ~0.01 s,
  and the two reads overlap (bench/RESULTS.md, Session 11); each archive is read once
  (deep.py).

When there is enough past the listing (a HEAD of every version, --deep reads), the
versions are shared out over forked workers, one per core (verify_workers.py): one
Python process uses one core, and `rclone check` with the gateway it reads through use
both.

`--fix` re-copies what is missing or different and checks it again. Only the tiers that
read Pocket's bytes (and `--fix`) open its disks; the others need its index alone, which
with the imports the copy path needs (aiohttp, the object services) was most of a small
bucket's verify time.

The result goes into the bucket's migration record (`last_verify`, with its tier), and
keys written since their last verify that compared equal are cleared, unless they were
written again meanwhile, and keys found different are marked dirty; cutover needs a clean
verify and no dirty key, and before it the gateway reads a key that is not dirty after a
verify from Pocket (routing.py).
"""
from __future__ import annotations

import time

from ..index import migrations as M
from ..index.versions import NULL
from . import listing, state

HEAD_BATCH = 64          # versions HEADed one after the other per thread hop (the default tier)


class Verifier:
    """One bucket's comparison, in three steps: `plan` (the listing tier, for every version),
    `check` (HEADs and reads of the versions that need them, or of one worker's share of
    them, verify_workers.py) and `finish` (--fix, the dirty keys, the record). `tc`,
    `objects` and `multipart` (the cluster and its object services, `attach`) are needed
    only by the tiers that read Pocket's bytes and by --fix."""

    def __init__(self, index, client, source_bucket: str, bucket: str, *, attrs: bool = False, deep: bool = False,
                 sample: float | None = None, concurrency: int = 16):
        self.index, self.client = index, client
        self.tc = self.objects = self.multipart = None
        self.source_bucket, self.bucket = source_bucket, bucket
        self.attrs, self.deep, self.sample = attrs or deep, deep, sample
        self.concurrency = max(1, concurrency)
        self.findings: list[dict] = []
        self.further: list[tuple] = []      # (source entry, Pocket's record, read in full?) beyond the listing
        self.checked = self.deep_read = self.headed = self.presigned = 0
        self._urls = None

    def attach(self, index, tc=None, services=None, concurrency: int | None = None) -> None:
        """What `check` and `finish` use in this process (a forked worker makes its own)."""
        self.index, self.tc = index, tc
        self.objects, self.multipart = (services.objects, services.multipart) if services is not None else (None, None)
        self.concurrency = max(1, concurrency or self.concurrency)

    @property
    def urls(self):
        """HEADs (one per version compared beyond its listing) and deep reads by presigned
        URL: a quarter of botocore's CPU. Made at the first, so the listing tier does not
        import aiohttp."""
        if self._urls is None:
            from . import presigned_get
            self._urls = presigned_get.PresignedGet(self.client, self.concurrency)
        return self._urls

    @property
    def tier(self) -> str:
        return "deep" if self.deep else "attrs" if self.attrs else "listing"

    def plan(self) -> None:
        """The listing tier for every version, and `further`: what needs a HEAD or a read.
        No event loop and no thread is left behind, so workers forked after it share out
        `further` (verify_workers.py)."""
        self.started = time.time()
        versioning = listing.versioning_of(self.client, self.source_bucket)
        with self.index.read() as ops:
            self.dirty = M.dirty(ops, self.bucket)
        self.dirty_keys = {k for k, _ in self.dirty}
        source = listing.list_bucket(self.client, self.source_bucket, bool(versioning))
        self.theirs = theirs = {(e.key, e.version_id): e for e in source}
        self.history: dict[str, list[str]] = {}
        for e in source:
            self.history.setdefault(e.key, []).append(e.version_id)     # newest first
        self.ours = ours = {(v.key, v.version_id): v.record for v in self.index.iter_versions(self.bucket)} \
            if self.index.get_bucket(self.bucket) else {}
        for where in sorted(set(ours) - set(theirs)):
            self.findings.append({"key": where[0], "version_id": where[1], "problem": "extra",
                                  "why": "in Pocket, not at the source"})
        self.checked = len(theirs)
        # Listing tier first, for all, with no I/O; HEADs and reads only for what needs them.
        if self.sample:
            import random
        for where, e in theirs.items():
            problem = _listed_differ(e, ours.get(where))
            if problem:
                self.findings.append({"key": e.key, "version_id": e.version_id, **problem})
            elif not e.delete_marker:
                read = self.deep or bool(self.sample and random.random() * 100 < self.sample)
                if read or self.attrs or e.key in self.dirty_keys:
                    self.further.append((e, ours[where], read))

    async def check(self, further: list[tuple]) -> None:
        """The HEAD tier and the reads for `further` (all of `self.further`, or a worker's share)."""
        import asyncio     # here: a verify with nothing past its listings runs without it (verify_workers.py)
        from concurrent.futures import ThreadPoolExecutor
        self.sem = asyncio.Semaphore(self.concurrency)
        heads = [one for one in further if not one[2]]
        batches = [heads[i:i + HEAD_BATCH] for i in range(0, len(heads), HEAD_BATCH)]
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(min(self.concurrency, len(batches)) or 1, thread_name_prefix="verify-head") as pool:
            await asyncio.gather(*(self._one(*one) for one in further if one[2]),
                                 *(self._head_batch(loop, pool, batch) for batch in batches))

    async def _head_batch(self, loop, pool, batch: list[tuple]) -> None:
        """The HEAD tier for `batch`, one version after the other in one thread: a thread hop,
        two futures and a task per version were ~a fifth of the default tier's CPU (py-spy
        --gil, 3,000 versions). A version the URL cannot HEAD, or with tags to fetch, goes
        the ordinary way (`_one`, `_attrs_then_bytes`)."""
        found, rest = await loop.run_in_executor(pool, self._heads_now, batch)
        self.headed += len(batch) - sum(head is None for _, _, head in rest)
        self.findings += found
        for e, record, head in rest:
            if head is None:
                await self._one(e, record, False)
            else:
                async with self.sem:
                    problem = await self._attrs_then_bytes(e, record, head, None, False)
                if problem:
                    self.findings.append({"key": e.key, "version_id": e.version_id, **problem})

    def _heads_now(self, batch: list[tuple]) -> tuple[list[dict], list[tuple]]:
        found, rest = [], []
        for e, record, _ in batch:
            head = self.urls.head_now(self.source_bucket, e.key, e.version_id if e.version_id != NULL else None)
            if head is None or head.get("TagCount"):
                rest.append((e, record, head))
                continue
            problem = _attrs_differ(e, record, head, {})
            if problem:
                found.append({"key": e.key, "version_id": e.version_id, **problem})
        return found, rest

    async def close(self) -> None:
        if self._urls is not None:
            self.presigned += self._urls.served
            await self._urls.close()
            self._urls = None

    async def finish(self, fix: bool) -> dict:
        """--fix, the dirty keys and the migration record, once every share is checked; the report."""
        fixed = await self._fix(self.theirs, self.ours) if fix and self.findings else 0
        await self.close()
        return self.conclude(fixed)

    def conclude(self, fixed: int = 0) -> dict:
        """The dirty keys (cleared where found equal, marked where not), the migration
        record and the report: what follows the checks, with the index alone."""
        dirty = self.dirty
        bad = {f["key"] for f in self.findings}
        equal = [(k, s) for k, s in dirty if k not in bad]     # cleared in one commit, not one each
        cleared = self.index.write(lambda ops: sum(M.clear_dirty(ops, self.bucket, k, s) for k, s in equal)) \
            if equal else 0
        if bad:   # read from the source, not Pocket, until a verify finds them equal (routing.py)
            self.index.write(lambda ops: [M.mark_dirty(ops, self.bucket, k) for k in sorted(bad)])
        report = {"bucket": self.bucket, "tier": self.tier, "checked": self.checked, "headed": self.headed,
                  "deep_read": self.deep_read, "deep": self.deep, "sample": self.sample,
                  "findings": self.findings[:1000],
                  "missing": sum(f["problem"] == "missing" for f in self.findings),
                  "mismatched": sum(f["problem"] not in ("missing",) for f in self.findings),
                  "fixed": fixed, "dirty_cleared": cleared, "clean": not self.findings,
                  "read_presigned": self.presigned,    # source HEADs and reads answered by URLs
                  "seconds": round(time.time() - self.started, 3)}
        self._record(report)
        return report

    async def _one(self, e, record: dict, read: bool) -> None:
        async with self.sem:
            problem = await self._beyond_listing(e, record, read)
            if problem:
                self.findings.append({"key": e.key, "version_id": e.version_id, **problem})

    async def _compare(self, e, record: dict | None) -> dict | None:
        """Every tier this verify runs, for one version (the re-check after a fix)."""
        return _listed_differ(e, record) or (None if e.delete_marker else
                                             await self._beyond_listing(e, record, self.deep))

    async def _beyond_listing(self, e, record: dict, read: bool) -> dict | None:
        """The HEAD tier, then (`read`: --deep, or this version drawn by --sample) both sides' bytes."""
        from . import copier
        got = None
        if read and not copier.is_multipart_etag(e.etag):
            got = await self._get(e)
            if "problem" in got:
                return got
            head = got
        else:
            head = await self._head(e)
        try:
            return await self._attrs_then_bytes(e, record, head, got, read)
        finally:
            if got is not None and not isinstance(got["Body"], bytes):
                got["Body"].close()      # read whole, or not at all when the attributes differ

    async def _attrs_then_bytes(self, e, record: dict, head: dict, got: dict | None, read: bool) -> dict | None:
        from . import copier
        tags = await copier.tags_of(self.client, self.source_bucket, e, head)
        problem = _attrs_differ(e, record, head, tags)
        if problem:
            return problem
        return await self._read_both(e, record, got) if read else None

    async def _head(self, e) -> dict:
        from . import copier
        self.headed += 1
        return await copier.head_of(self.client, self.urls, self.source_bucket, e)

    async def _get(self, e) -> dict:
        """The source's GET of the version (its body bytes or a stream), or the problem."""
        from . import copier
        try:
            return await copier.source_get(self.client, self.urls, self.source_bucket, e)
        except copier.SourceChanged as err:
            return {"problem": "different", "why": f"the source changed while verified: {err}"}
        except self.client.exceptions.ClientError as err:
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") not in (404, 412):
                raise
            return {"problem": "different", "why": "the source changed while verified (it answered "
                                                   f"{err.response['ResponseMetadata']['HTTPStatusCode']})"}

    async def _read_both(self, e, record: dict, got: dict | None = None) -> dict | None:
        """Both sides' bytes, read at once and compared, every fragment archive checked (deep.py)."""
        from . import copier, deep
        self.deep_read += 1
        if got is None:
            got = await self._get(e)
            if "problem" in got:
                return got
        theirs = deep.once(got["Body"]) if isinstance(got["Body"], bytes) else \
            copier._stream(got["Body"], copier.RateLimit(0), [0])
        return await deep.read_both(self.tc, self.objects, record, theirs)

    async def _fix(self, theirs: dict, ours: dict) -> int:
        """Re-copy every missing or different version, then compare it again."""
        from . import copier
        limit, moved, fixed = copier.RateLimit(0), [0], 0
        for f in list(self.findings):
            if f["problem"] == "extra":
                continue             # Pocket never deletes on its own: an operator's call
            e = theirs[(f["key"], f["version_id"])]
            old = ours.get((e.key, e.version_id))
            if old is not None and e.version_id != NULL:
                await self.objects.delete_version(self.bucket, e.key, e.version_id)
            internal = self._fix_id(e, old, ours)
            w = copier.Wanted(e.key, e.version_id, e.delete_marker, e.size, e.etag, e.last_modified, internal)
            try:
                await copier.copy_version(self.objects, self.multipart, self.client, self.source_bucket,
                                          self.bucket, w, limit, moved)
            except Exception as err:
                f["fix"] = f"failed: {err!r}"[:300]
                continue
            record = self.index.get_version(self.bucket, e.key, e.version_id)
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
        from ..objects.ids import new_id
        from .version_ids import internal_ids
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
        summary = {k: report[k] for k in ("tier", "checked", "missing", "mismatched", "deep", "clean", "fixed")}
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
        self.index.write(update)


def _attrs_differ(e, record: dict, head: dict, tags: dict) -> dict | None:
    """The HEAD tier: what the source's HEAD (and tags) says against Pocket's record."""
    from . import copier
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
    return None


def _listed_differ(e, record: dict | None) -> dict | None:
    """The listing tier: what one listing of each side shows (presence, delete marker, size,
    ETag, Last-Modified to the second: what S3's HEAD gives)."""
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
    if abs(record.get("created", 0) - e.last_modified) >= 1.0:
        return {"problem": "different", "why": "Last-Modified differs"}
    return None


def needs_cluster(deep: bool, sample: float | None, fix: bool) -> bool:
    """Whether a verify reads or writes Pocket's objects (and so opens its disks), or
    compares with its index alone."""
    return bool(deep or sample or fix)
