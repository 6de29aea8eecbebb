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
    earlier_bytes: int = 0     # of total_bytes, copied by the passes this one resumes
    reported: tuple = (0, 0)   # (objects, bytes) already added to the ranges' progress counters

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at this pass's rate: a resumed pass owes only what earlier passes left."""
        seconds = (time.monotonic() if now is None else now) - self.started
        return eta(self.total_bytes, self.earlier_bytes + self.bytes, self.bytes / seconds if seconds > 0 else 0.0)

    def as_dict(self) -> dict:
        seconds = time.monotonic() - self.started
        return {"bucket": self.bucket, "copied": self.copied, "skipped": self.skipped, "bytes": self.bytes,
                "errors": self.errors, "changed_during_copy": self.changed, "read_presigned": self.presigned,
                "written_via_gateway": self.via_gateway,
                "failed": self.failed[:100],
                "seconds": round(seconds, 3), "bytes_per_second": self.bytes / seconds if seconds else 0.0}


def eta(total: int | None, done: int, rate: float) -> float | None:
    """Seconds until `total` bytes are copied at `rate`; None when either is unknown."""
    return max(total - done, 0) / rate if total and rate > 0 else None
