"""The migrating gateway end to end with `pocket migrate copy` and `verify` run beside it
(test_migrate_gateway.py and test_migrate_gateway_copy.py have the rest; apart so that xdist
runs the files side by side: every test starts its own source and cluster)."""
from __future__ import annotations

import os
import random
import time

import pytest

from .harness import REPO
from .migrate_world import BUCKET, Writer, cut_over_under_writes, enable, holds, metric, migrate, status

pytestmark = pytest.mark.long   # dealt to the workers first (conftest.py)


def _built(command: str) -> bool:
    with open(os.path.join(REPO, "cli", "migrate.py"), encoding="utf-8") as f:
        return f'_not_built("{command}")' not in f.read()


def seed(src, rng: random.Random) -> dict:
    """Objects already at the source before enable (what `copy` must move): sizes from 0 bytes to
    a multipart object with an unusual part size, keys with unicode, spaces, % and +."""
    model = {}
    for n, size in enumerate([0, 1, 1_000, 131_073, 400_000]):
        key = f"seed/{n} ü %2B+{n}"
        body, meta, tags = rng.randbytes(size), {"seeded": str(n)}, {"n": str(n)}
        src.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta, Tagging=f"n={n}",
                       ContentDisposition=f'attachment; filename="{n}.bin"')
        model[key] = (body, meta, tags)
    parts = [rng.randbytes((5 << 20) + 3), rng.randbytes(77_777)]
    upload = src.create_multipart_upload(Bucket=BUCKET, Key="seed/multi part", Metadata={"seeded": "multi"})
    done = [{"PartNumber": i, "ETag": src.upload_part(Bucket=BUCKET, Key="seed/multi part", PartNumber=i,
                                                      UploadId=upload["UploadId"], Body=p)["ETag"]}
            for i, p in enumerate(parts, 1)]
    src.complete_multipart_upload(Bucket=BUCKET, Key="seed/multi part", UploadId=upload["UploadId"],
                                  MultipartUpload={"Parts": done})
    model["seed/multi part"] = (b"".join(parts), {"seeded": "multi"}, {})
    return model


@pytest.mark.skipif(not (_built("copy") and _built("verify")),
                    reason="`pocket migrate copy` and `verify` are mig-data's half: this runs once both are merged")
def test_end_to_end_with_copy_and_verify(world):
    """plan-less: enable -> copy -> verify -> cutover -> rollback -> copy/verify -> cutover -> detach,
    with the writer writing throughout; ETags of copied objects (multipart too) equal the source's."""
    source, link, c = world
    src, gw = source.client(), c.client()
    src.create_bucket(Bucket=BUCKET)
    seeded = seed(src, random.Random(12))
    etags = {k: src.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in seeded}
    enable(c, link)
    writer = Writer(gw, seed=13)
    writer.model.update(seeded)
    writer.start()

    def copy_until_backfilled():
        """What an operator does: a pass during which keys kept changing at the source leaves
        the bucket in dual-write and says to run copy again; so run it again, until backfilled."""
        deadline = time.monotonic() + 300
        while True:
            report = migrate(c, "copy", BUCKET)
            if status(c)["state"] == "backfilled":
                return
            assert report["buckets"][0]["changed_during_copy"] > 0, report   # the only reason to stay behind
            assert time.monotonic() < deadline, f"copy never reached backfilled: {report}"

    def copy_and_verify():
        copy_until_backfilled()
        with writer.paused():
            report = migrate(c, "verify", BUCKET)
        assert status(c)["state"] == "verified", report

    try:
        copy_and_verify()
        # the pass that finished the backfill counted too (its counters were lost in the move once)
        assert status(c)["counters"]["copied_objects"] >= len(seeded)
        # the dashboard's progress panel: what the backfill copied, as the running gateway exports it
        assert metric(c, f'pocket_migrate_objects_copied{{bucket="{BUCKET}"}}') == status(c)["objects_copied"] > 0
        cut_over_under_writes(c, writer, src, gw)
        for key, etag in etags.items():           # copied objects keep the source's ETags, multipart too
            assert gw.head_object(Bucket=BUCKET, Key=key)["ETag"] == etag, key
        assert migrate(c, "rollback", BUCKET)["buckets"][0]["state"] == "dual-write"
        copy_and_verify()
        assert migrate(c, "cutover", BUCKET)["buckets"][0]["state"] == "cutover"
        with writer.paused():
            assert migrate(c, "detach", BUCKET)["buckets"][0]["state"] == "detached"
            at_detach = dict(writer.model)
    finally:
        writer.stop()
    assert not writer.errors, writer.errors
    holds(gw, writer.model, "Pocket alone after detach")
    holds(src, at_detach, "source as it was at detach")
