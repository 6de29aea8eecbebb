"""What one copy pass of one bucket did: the counters `pocket migrate copy` reports, the
progress line shows and the migration record adds up (backfill.py, workers.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Tally:
    bucket: str
    copied: int = 0
    skipped: int = 0
    bytes: int = 0
    errors: int = 0
    changed: int = 0
    presigned: int = 0         # source GETs (objects, parts) answered by presigned URLs (presigned_get.py)
    via_gateway: int = 0       # versions the running gateway stored for the copy (gateway_copy.py)
    failed: list = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    total_bytes: int = 0
    reported: tuple = (0, 0)   # (objects, bytes) already added to the ranges' progress counters

    def as_dict(self) -> dict:
        seconds = time.monotonic() - self.started
        return {"bucket": self.bucket, "copied": self.copied, "skipped": self.skipped, "bytes": self.bytes,
                "errors": self.errors, "changed_during_copy": self.changed, "read_presigned": self.presigned,
                "written_via_gateway": self.via_gateway,
                "failed": self.failed[:100],
                "seconds": round(seconds, 3), "bytes_per_second": self.bytes / seconds if seconds else 0.0}
