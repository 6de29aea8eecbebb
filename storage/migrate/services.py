"""The object services a one-shot migration command writes through (copy, verify --fix,
enable, the journal): its own index writer, and a report of its writes in flight so a
gateway's scrubber never takes the archives of a copy whose commit is still to come."""
from __future__ import annotations

import os

from ..index.batcher import IndexWriter
from ..leased import holder_id
from ..objects.in_flight import Reporter


class ToolServices:
    """Made inside the command's event loop; closed with it."""

    def __init__(self, cfg, tc):
        from ..objects.build import object_services
        self.cfg, self.index = cfg, tc.index
        self.writer = IndexWriter(tc.index)
        self.objects, self.multipart = object_services(cfg, tc.cluster, tc.index, self.writer)
        self.reporter = Reporter(self.writer, holder_id(f"migrate/{os.getpid()}"), self.objects.writes)
        self.reporter.start()

    async def close(self) -> None:
        try:
            await self.objects.drain(timeout=60)
        finally:
            await self.reporter.stop()
            await self.writer.aclose()
