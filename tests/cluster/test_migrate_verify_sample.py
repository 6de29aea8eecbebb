"""`pocket migrate verify --sample P` re-reads about P % of the versions (drawn at random,
no seed: so the test holds bounds five standard deviations wide), and P=100 reads all of
them and so catches a rotted object that the HEAD tier cannot see; a smaller sample finds
it only if it drew it, and never reports anything else.

Real processes: moto as the source, an embedded Pocket with scrub and repair off (the rot
this test plants must stay), the `pocket migrate` commands.
"""
from __future__ import annotations

import random

from .archives import archives_of, flip_payload_byte
from .harness import QUIET
from .sources import enable, moto_and_pocket, pocket_migrate

BUCKET = "sampled"
COUNT, SHARE = 60, 30      # 18 reads expected, standard deviation 3.5


def _found(report) -> set:
    return {(f["key"], f["problem"]) for b in report["buckets"] for f in b["findings"]}


def test_sample_reads_about_its_share_and_all_of_them_catch_rot(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True, sections=QUIET) as (source, c):
        src, rnd = source.client(), random.Random(91)
        src.create_bucket(Bucket=BUCKET)
        for i in range(COUNT):
            src.put_object(Bucket=BUCKET, Key=f"obj/{i:03d}", Body=rnd.randbytes(rnd.randint(40_000, 80_000)))
        enable(c, BUCKET, source.endpoint)
        pocket_migrate(c, source, "copy", BUCKET, "--json")
        _, clean = pocket_migrate(c, source, "verify", BUCKET, "--sample", str(SHARE), "--json")
        [b] = clean["buckets"]
        assert clean["clean"] and b["checked"] == COUNT
        assert 1 <= b["deep_read"] <= 36 and b["deep_read"] != COUNT, b      # about 18, not none, not all

        rotten = "obj/017"
        for ref in archives_of(c, BUCKET, rotten):      # every fragment: no read gets its bytes back
            flip_payload_byte(ref, rnd)
        _, heads = pocket_migrate(c, source, "verify", BUCKET, "--json")
        assert heads["clean"], "the HEAD tier cannot see rot; if it can, this test proves nothing"
        code, sampled = pocket_migrate(c, source, "verify", BUCKET, "--sample", str(SHARE), "--json", ok=(0, 1))
        found = _found(sampled)
        assert found <= {(rotten, "unreadable"), (rotten, "damaged")} and (code == 1) == bool(found), sampled
        assert 1 <= sampled["buckets"][0]["deep_read"] <= 36
        _, every = pocket_migrate(c, source, "verify", BUCKET, "--sample", "100", "--json", ok=(1,))
        assert every["buckets"][0]["deep_read"] == COUNT
        assert {key for key, _ in _found(every)} == {rotten}, every
