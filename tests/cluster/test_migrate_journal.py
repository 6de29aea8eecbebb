"""A write the source took but Pocket missed during dual-write is journaled, and its retry
copies the object as the backfill does: a multipart object keeps its part boundaries (so
its md5-of-md5s ETag), Last-Modified, metadata and tags, not a plain GET -> PUT's.

Real processes: moto as the source, a six-node Pocket whose nodes are stopped so that
Pocket's half of a CompleteMultipartUpload fails while the source's succeeds.
"""
from __future__ import annotations

import random

from .harness import metric, pocket, wait_for
from .sources import enable, moto_and_pocket

BUCKET = "moving"


def _status(c) -> dict:
    return pocket(c, "migrate", "status", BUCKET, "--json")[1]["buckets"][0]


def test_journaled_multipart_complete_is_retried_with_its_etag_and_metadata(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, nodes=6) as (source, c):
        src, rnd = source.client(), random.Random(21)
        src.create_bucket(Bucket=BUCKET)
        enable(c, BUCKET, source.endpoint)
        gw = c.client()
        up = gw.create_multipart_upload(Bucket=BUCKET, Key="film.mkv", Metadata={"scene": "7"},
                                        ContentType="video/x-matroska")
        parts = [{"PartNumber": n, "ETag": gw.upload_part(Bucket=BUCKET, Key="film.mkv", UploadId=up["UploadId"],
                                                          PartNumber=n, Body=rnd.randbytes(size))["ETag"]}
                 for n, size in ((1, (5 << 20) + 11), (2, 9999))]
        for node in c.node_ids[:3]:       # Pocket can no longer write a quorum; the source can
            c.stop(node)
        gw.complete_multipart_upload(Bucket=BUCKET, Key="film.mkv", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": parts})
        gw.put_object_tagging(Bucket=BUCKET, Key="film.mkv", Tagging={"TagSet": [{"Key": "cut", "Value": "final"}]})
        at_source = src.head_object(Bucket=BUCKET, Key="film.mkv")
        assert at_source["ETag"].endswith('-2"')
        assert src.get_object_tagging(Bucket=BUCKET, Key="film.mkv")["TagSet"] == [{"Key": "cut", "Value": "final"}]
        assert _status(c)["journal"] >= 1, "Pocket's failed half was not journaled"
        for node in c.node_ids[:3]:
            c.start_node(node)
        # polled over HTTP (the gauge counts the index's journal at each scrape), not a process per look
        wait_for("the journal retry", lambda: metric(c.endpoint, "pocket_migrate_journal_entries",
                                                     f'bucket="{BUCKET}"') == 0, timeout=120, every=0.3)
        assert _status(c)["journal"] == 0

        copied = pocket(c, "migrate", "copy", BUCKET, "--json")[1]["buckets"][0]
        assert (copied["copied"], copied["skipped"]) == (0, 1), "the retry left Pocket's copy unlike the source's"
        report = pocket(c, "migrate", "verify", BUCKET, "--json")[1]
        assert report["clean"], report
        pocket(c, "migrate", "cutover", BUCKET, "--json")     # reads now come from Pocket
        got = gw.get_object(Bucket=BUCKET, Key="film.mkv")
        assert got["ETag"] == at_source["ETag"]
        assert got["LastModified"] == at_source["LastModified"]
        assert got["Metadata"] == {"scene": "7"} and got["ContentType"] == "video/x-matroska"
        assert gw.get_object_tagging(Bucket=BUCKET, Key="film.mkv")["TagSet"] == [{"Key": "cut", "Value": "final"}]
        whole = src.get_object(Bucket=BUCKET, Key="film.mkv")["Body"].read()
        assert got["Body"].read() == whole
        assert gw.head_object(Bucket=BUCKET, Key="film.mkv", PartNumber=1)["ContentLength"] == (5 << 20) + 11
