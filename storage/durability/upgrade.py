"""Re-keying objects written before keyed checksums (`pocket upgrade`).

Archives of format 1 carry unkeyed xxh3 checksums, which anyone can forge; reads accept
them only for objects whose record has no `archive_format` (layout.accepted). This pass
rewrites such an object's archives in the keyed format and then marks its record, after
which nothing unkeyed passes for it. Before anything is committed the whole object is
read back and its MD5 compared with its ETag: a fragment forged with a valid xxh3 (or
rot the checksum missed) makes the object fail here instead of being sealed under a MAC.

Each version is rewritten whole, under its own archive names (temp file + rename, as
any write), and its record is marked only once every archive took the new bytes, so the
pass is resumable: run it again and it carries on with what is still unkeyed. A version
with a disk down, damage found on the way, or an ETag that is not an MD5 (multipart
objects, whose parts this pass does not rewrite) is reported and left as it is.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import layout
from ..codec import Codec
from ..index.versions import is_marker
from ..index import parts
from ..objects.commits import amend
from ..objects.get import ArchiveReader
from ..objects.put import ArchiveWriter

log = logging.getLogger("pocket.upgrade")

_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass
class UpgradeReport:
    versions: int = 0        # object versions looked at
    keyed: int = 0           # already in the keyed format
    upgraded: int = 0        # rewritten by this pass
    left: list[dict] = field(default_factory=list)   # still unkeyed, and why
    bytes_written: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {**self.__dict__}


class Upgrader:
    def __init__(self, cluster, index, timeout: float = 10.0):
        self.cluster, self.index, self.timeout = cluster, index, timeout

    async def run_once(self, on_version: Callable[[dict], None] | None = None) -> UpgradeReport:
        started, r = time.monotonic(), UpgradeReport()
        for bucket in self.index.list_buckets():
            for version in list(self.index.iter_versions(bucket["name"])):
                record = version.record
                if is_marker(record):
                    continue
                r.versions += 1
                if layout.accepted(record) == layout.STRICT:
                    r.keyed += 1
                elif (why := await self._upgrade(record, r)) is not None:
                    r.left.append({"bucket": record["bucket"], "key": record["key"],
                                   "version_id": record["version_id"], "why": why})
                    log.warning("%s/%s version %s stays unkeyed: %s", record["bucket"], record["key"],
                                record["version_id"], why)
                else:
                    r.upgraded += 1
                if on_version:
                    on_version(record)
        r.seconds = time.monotonic() - started
        return r

    async def _upgrade(self, record: dict, r: UpgradeReport) -> str | None:
        """None once the version is rewritten keyed and marked; otherwise why not."""
        if parts.is_multipart(record) or not _MD5.fullmatch(record.get("etag", "")):
            return "its ETag is not an MD5 of its bytes (multipart): not rewritten by this pass"
        volume = self.cluster.volumes.get(record["volume"])
        if volume is None or not all(self.cluster.is_up(d) for d in volume["disks"]):
            return "a disk of its volume is down; run again when it is back"
        codec = Codec(record["k"], record["m"])
        manifest = await self._manifest(volume, record)
        if manifest is None:
            return "no fragment has a readable manifest; run `pocket scrub` and `pocket repair` first"
        reader = ArchiveReader(self.cluster, codec, manifest, volume)
        writer = ArchiveWriter(self.cluster, codec, volume, record["version_id"], layout.stored_segment_size(manifest),
                               quorum=codec.n, timeout=self.timeout, keep_on_abort=True)
        geo, md5, loop = reader.geometry, hashlib.md5(), asyncio.get_running_loop()
        try:
            writer.start()
            if geo.segments:
                async for segment in reader.segments(0, geo.segments - 1):
                    blocks = await loop.run_in_executor(None, _digest_and_encode, md5, codec, segment)
                    await writer.write_blocks(blocks)
            if reader.damage:
                raise _Refused(f"damaged fragments {[d.index for d in reader.damage]}; run `pocket repair` first")
            if md5.hexdigest() != record["etag"]:
                raise _Refused("its bytes do not match its ETag (a forged or rotten fragment passed its "
                               "unkeyed checksum); run `pocket scrub` and `pocket repair` first")
            keyed = {**manifest, "archive_format": layout.FORMAT_VERSION}
            done = await writer.finish(keyed)
        except _Refused as e:
            await asyncio.shield(writer.abort(str(e)))
            return str(e)
        except Exception as e:
            await asyncio.shield(writer.abort(repr(e)))
            return f"rewrite failed: {e!r}"
        except BaseException as e:
            await asyncio.shield(writer.abort(repr(e)))
            raise
        finally:
            reader.close()   # a rewrite that failed midway leaves its fragment streams open
        if len(done) < codec.n:
            return f"only fragments {sorted(done)} took the keyed rewrite; run again"
        r.bytes_written += codec.n * (geo.records_end() + len(layout.pack_trailer(keyed)))
        changed = self.index.write(lambda ops: amend(ops, record["bucket"], record["key"], record["version_id"],
                                                     {"archive_format": layout.FORMAT_VERSION}))
        return None if changed is not None else "deleted while it was rewritten"

    async def _manifest(self, volume: dict, record: dict) -> dict | None:
        for i, disk_id in enumerate(volume["disks"]):
            try:
                manifest = await self.cluster.disks[disk_id].read_manifest(
                    layout.archive_name(record["version_id"], i))
            except Exception:
                continue
            if manifest.get("version_id") == record["version_id"]:
                return manifest
        return None


class _Refused(Exception):
    """The version is not rewritten, for the reason given."""


def _digest_and_encode(md5, codec: Codec, segment: bytes) -> list[bytes]:
    md5.update(segment)
    return codec.encode(segment)
