"""Object Lock when a lock and a delete race, on in-process disks (no processes, no network).

The delete of a version is judged twice: before its version-deleted record goes to the
disks, and inside the index transaction that removes the row. A legal hold committed in
between must win, in the live index and in an index rebuilt from the disks; the same for
a retention change refused inside the transaction because a stricter one won meanwhile.
"""
from __future__ import annotations

import asyncio
import os
import random

import pytest

from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.index.rebuild import rebuild
from storage.objects import locks
from storage.placement.volumes import build_volumes

from storage.s3.digests import BodyDigests

from .test_rebuild_multipart import B, World, body


@pytest.fixture
def world(tmp_path):
    w = World(str(tmp_path))
    yield w
    w.index.close()


async def _locked_bucket(w: World) -> dict:
    await w.buckets.create(B, {"owner": "me", "created": 1.0, "versioning": "Enabled",
                               "object_lock": {"enabled": True}})
    data = random.Random(1).randbytes(200_000)
    return await w.objects.put(B, "k", body(data), len(data), BodyDigests({}, None, None), {"versioned": True})


def _rebuilt(w: World) -> dict | None:
    volumes = [v for width in (3, 6) for v in build_volumes(w.infos, width)]
    index = Index(LmdbBackend(os.path.join(w.root, "rebuilt")))
    asyncio.run(rebuild(w.disks, index, volumes))
    try:
        return index.get_version(B, "k", "null") or index.get_object(B, "k")
    finally:
        index.close()


def _racing(w: World, kind: str, race):
    """Run `race()` just before the first disk record of `kind` is written."""
    real = w.objects.put_records

    async def put_records(volume, doc, quorum):
        if doc["kind"] == kind:
            w.objects.put_records = real     # once
            await race()
        return await real(volume, doc, quorum)
    w.objects.put_records = put_records


def test_a_legal_hold_set_during_a_delete_wins_live_and_after_a_rebuild(world):
    w = world

    async def scenario():
        record = await _locked_bucket(w)
        vid = record["version_id"]
        _racing(w, "version-deleted",
                lambda: w.objects.amend(B, "k", "legal-hold", {"legal_hold": "ON"}, vid))
        with pytest.raises(locks.ObjectLocked):
            await w.objects.delete_version(B, "k", vid)
        return vid

    vid = asyncio.run(scenario())
    assert w.index.get_version(B, "k", vid)["legal_hold"] == "ON"
    rebuilt = _rebuilt(w)
    assert rebuilt is not None and rebuilt["version_id"] == vid and rebuilt["legal_hold"] == "ON"


def test_a_retention_refused_inside_the_transaction_is_not_what_a_rebuild_finds(world):
    w = world
    strict = locks.retention(locks.COMPLIANCE, 4_000_000_000)
    weaker = locks.retention(locks.GOVERNANCE, 3_000_000_000)

    async def scenario():
        record = await _locked_bucket(w)
        vid = record["version_id"]
        # a COMPLIANCE retention commits while a GOVERNANCE one is on its way to the disks
        _racing(w, "retention",
                lambda: w.objects.amend(B, "k", "retention", {"retention": strict}, vid))
        with pytest.raises(locks.ObjectLocked):
            await w.objects.amend(B, "k", "retention", {"retention": weaker}, vid,
                                  lambda row: locks.check_retention_change(row, weaker, False))
        return vid

    vid = asyncio.run(scenario())
    assert w.index.get_version(B, "k", vid)["retention"] == strict
    assert _rebuilt(w)["retention"] == strict
