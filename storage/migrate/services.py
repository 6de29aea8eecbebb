"""The object services a one-shot migration command writes through (copy, verify --fix,
enable, the journal): its own index writer, and a report of its writes in flight so a
gateway's scrubber never takes the archives of a copy whose commit is still to come.

The object and multipart services are built at their first use: a copy pass that finds
every version already in Pocket (an empty bucket, a resumed or repeated pass) writes
nothing, and importing and building them was ~15 % of such a pass's CPU (py-spy of an
empty bucket's `pocket migrate copy`)."""
from __future__ import annotations

import os

from ..index.batcher import IndexWriter
from ..leased import holder_id
from ..objects.in_flight import Reporter


class ToolServices:
    """Made inside the command's event loop; closed with it."""

    def __init__(self, cfg, tc):
        self.cfg, self.tc, self.index = cfg, tc, tc.index
        self.writer = IndexWriter(tc.index)
        self._built: tuple | None = None
        self.reporter: Reporter | None = None

    @property
    def objects(self):
        return self._services()[0]

    @property
    def multipart(self):
        return self._services()[1]

    def _services(self) -> tuple:
        if self._built is None:
            from ..objects.build import object_services
            objects, multipart = object_services(self.cfg, self.tc.cluster, self.index, self.writer)
            self.reporter = Reporter(self.writer, holder_id(f"migrate/{os.getpid()}"), objects.writes)
            self.reporter.start()
            self._built = (objects, multipart)
        return self._built

    async def close(self) -> None:
        try:
            if self._built is not None:
                await self._built[0].drain(timeout=60)
        finally:
            if self.reporter is not None:
                await self.reporter.stop()
            await self.writer.aclose()
