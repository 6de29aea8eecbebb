"""`pocket migrate plan` against a real S3 server (SeaweedFS): the inventory, `query`, S3
Inventory manifests (CSV and Parquet) and the HTML report as headless Chromium renders it."""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
from urllib.parse import quote_plus

import pytest

from .harness import ProcCluster
from .sources import pocket_migrate, start_seaweedfs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    source = start_seaweedfs(str(tmp_path_factory.mktemp("weed")))
    cluster = None
    try:
        cluster = ProcCluster(str(tmp_path_factory.mktemp("pocket")), embedded=True).start()
        yield source, cluster, _seed(source.client())
    finally:
        if cluster is not None:
            cluster.close()
        source.close()


def _seed(s3) -> dict:
    """Three buckets of different sizes; returns what was written, per bucket."""
    rnd = random.Random(9)
    wrote = {"photos": {}, "tiny": {}, "docs": []}
    for name in wrote:
        s3.create_bucket(Bucket=name)
    sizes = [0, 1, 700, 5000, 70_000, 200_000, 1_500_000] + [rnd.randint(1, 300_000) for _ in range(23)]
    for i, n in enumerate(sizes):
        key = f"{['2023', '2024', 'raw'][i % 3]}/img {i}+%é.jpg"
        s3.put_object(Bucket="photos", Key=key, Body=rnd.randbytes(n))
        wrote["photos"][key] = n
    up = s3.create_multipart_upload(Bucket="photos", Key="video/big.mp4")
    parts = []
    for number, n in ((1, 5 << 20), (2, 1234)):
        etag = s3.upload_part(Bucket="photos", Key="video/big.mp4", UploadId=up["UploadId"], PartNumber=number,
                              Body=rnd.randbytes(n))["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket="photos", Key="video/big.mp4", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    wrote["photos"]["video/big.mp4"] = (5 << 20) + 1234
    for key in ("a", "b"):
        s3.put_object(Bucket="tiny", Key=key, Body=rnd.randbytes(3))
        wrote["tiny"][key] = 3
    s3.put_bucket_versioning(Bucket="docs", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"v1", b"v2 longer", b"v3"):
        wrote["docs"].append(s3.put_object(Bucket="docs", Key="report.txt", Body=body)["VersionId"])
    s3.put_object(Bucket="docs", Key="gone.txt", Body=b"x")
    s3.delete_object(Bucket="docs", Key="gone.txt")
    return wrote


def test_plan_inventories_buckets_and_answers_queries(env):
    source, cluster, wrote = env
    _, report = pocket_migrate(cluster, source, "plan", "photos", "tiny", "docs", "--bandwidth", "100Mbit", "--json")
    stats = {b["bucket"]: b for b in report["buckets"]}
    assert stats["photos"]["objects"] == len(wrote["photos"])
    assert stats["photos"]["bytes"] == sum(wrote["photos"].values())
    assert stats["photos"]["multipart"] == 1 and stats["photos"]["parts"] == 2
    assert stats["photos"]["histogram"][0] == {"label": "0 B", "objects": 1, "bytes": 0}
    assert {p["prefix"] for p in stats["photos"]["top_prefixes"]} == {"2023/", "2024/", "raw/", "video/"}
    assert stats["docs"]["versioning"] == "Enabled"
    assert (stats["docs"]["objects"], stats["docs"]["versions"], stats["docs"]["delete_markers"]) == (1, 4, 1)
    assert stats["tiny"]["objects"] == 2
    # 100 Mbit/s = 12.5 MB/s
    assert stats["photos"]["transfer_seconds"] == pytest.approx(stats["photos"]["version_bytes"] / 12.5e6)
    assert report["order"][0] == "tiny" and report["order"][-1] == "photos"
    # status measures the backfill against what the plan counted: every version and marker
    _, shown = pocket_migrate(cluster, source, "status", "photos", "docs", "--json")
    totals = {r["bucket"]: (r["source_objects"], r["source_bytes"], r["objects_copied"]) for r in shown["buckets"]}
    assert totals["photos"] == (len(wrote["photos"]), sum(wrote["photos"].values()), 0)
    assert totals["docs"][0] == 4 + 1 and totals["docs"][1] == stats["docs"]["version_bytes"]
    # the ensemble answers questions without listing again
    _, rows = pocket_migrate(cluster, source, "query", "SELECT key, size FROM objects WHERE bucket='photos' "
                             "ORDER BY key", "--json")
    assert {r["key"]: r["size"] for r in rows} == wrote["photos"]
    _, rows = pocket_migrate(cluster, source, "query", "SELECT version_id, delete_marker, seq FROM objects "
                             "WHERE bucket='docs' AND key='report.txt' ORDER BY seq", "--json")
    assert [r["version_id"] for r in rows] == wrote["docs"][::-1]     # the history, newest first
    code, out = pocket_migrate(cluster, source, "query", "DELETE FROM objects", ok=(1,))
    assert "readonly" in out or "read-only" in out
    _, rows = pocket_migrate(cluster, source, "query", "SELECT count(*) AS n FROM objects", "--json")
    assert rows[0]["n"] > 0
    # the operator's order replaces the suggested one, and is remembered
    _, report = pocket_migrate(cluster, source, "plan", "tiny", "--order", "tiny", "--json")
    assert report["order"] == ["tiny"]


def _inventory_rows(s3, bucket: str, glacier: set[str]) -> list[dict]:
    rows = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", ()):
            rows.append({"bucket": bucket, "key": o["Key"], "size": o["Size"], "e_tag": o["ETag"].strip('"'),
                         "last_modified_date": o["LastModified"].isoformat(),
                         "storage_class": "GLACIER" if o["Key"] in glacier else "STANDARD",
                         "is_multipart_uploaded": "-" in o["ETag"]})
    return rows


def _publish(s3, bucket: str, prefix: str, fmt: str, data: bytes, schema: str, source: str = "photos") -> str:
    name = f"{prefix}/data/part-0.{'csv.gz' if fmt == 'CSV' else 'parquet'}"
    s3.put_object(Bucket=bucket, Key=name, Body=data)
    manifest = {"sourceBucket": source, "destinationBucket": f"arn:aws:s3:::{bucket}", "version": "2016-11-30",
                "fileFormat": fmt, "fileSchema": schema,
                "files": [{"key": name, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()}]}
    s3.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=json.dumps(manifest).encode())
    return f"s3://{bucket}/{prefix}/manifest.json"


def test_plan_from_s3_inventory_manifests(env):
    """A CSV and a Parquet inventory report give the same figures as listing; the
    objects they say are in Glacier are flagged as needing a restore."""
    import pyarrow as pa                  # the test extra has it (for users: the `migrate` extra)
    import pyarrow.parquet as pq
    source, cluster, wrote = env
    s3 = source.client()
    s3.create_bucket(Bucket="inventory-reports")
    glacier = set(sorted(wrote["photos"])[:3])
    rows = _inventory_rows(s3, "photos", glacier)
    text = io.StringIO()
    w = csv.writer(text, quoting=csv.QUOTE_ALL)
    for r in rows:
        w.writerow([r["bucket"], quote_plus(r["key"]), r["size"], r["last_modified_date"], r["e_tag"],
                    r["storage_class"], str(r["is_multipart_uploaded"]).lower()])
    csv_url = _publish(s3, "inventory-reports", "photos/csv", "CSV", gzip.compress(text.getvalue().encode()),
                       "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded")
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    parquet_url = _publish(s3, "inventory-reports", "photos/parquet", "Parquet", buf.getvalue(),
                           "message s3.inventory { required binary bucket; required binary key; }")
    for url in (csv_url, parquet_url):
        _, report = pocket_migrate(cluster, source, "plan", "photos", "--inventory", url, "--json")
        (photos,) = report["buckets"]
        assert photos["method"] == "inventory"
        assert photos["objects"] == len(wrote["photos"]) and photos["bytes"] == sum(wrote["photos"].values())
        assert photos["needs_restore"] == 3
        _, keys = pocket_migrate(cluster, source, "query", "SELECT key FROM objects WHERE bucket='photos' AND "
                                 "storage_class='GLACIER'", "--json")
        assert {r["key"] for r in keys} == glacier
    # a report that does not match its manifest is refused, and says why
    s3.put_object(Bucket="inventory-reports", Key="photos/csv/data/part-0.csv.gz", Body=b"rewritten")
    _, out = pocket_migrate(cluster, source, "plan", "photos", "--inventory", csv_url, ok=(1,))
    assert "MD5" in out


def _csv_report(rows: list[dict]) -> bytes:
    text = io.StringIO()
    w = csv.writer(text, quoting=csv.QUOTE_ALL)
    for r in rows:
        w.writerow([r["bucket"], quote_plus(r["key"]), r["size"], r["last_modified_date"], r["e_tag"],
                    r["storage_class"], str(r["is_multipart_uploaded"]).lower()])
    return gzip.compress(text.getvalue().encode())


def test_copy_takes_its_keys_from_the_inventory_report_without_listing(env):
    """After `plan --inventory`, `copy` lists nothing: the report's keys are copied (a key
    overwritten at the source since is seen by its conditional GET and listed alone, by
    its own prefix); a key created after the report is what `verify` (which lists) finds
    missing and `--fix` copies. `copy --list` lists the source instead."""
    import dataclasses

    from .source_meter import SourceMeter
    source, cluster, _ = env
    s3, rnd = source.client(), random.Random(31)
    s3.create_bucket(Bucket="reported")
    s3.create_bucket(Bucket="reported-inventory")
    wrote = {}
    for i in range(30):
        key = f"r/{i:03d} é+%.bin"
        wrote[key] = rnd.randbytes(rnd.choice([0, 1, 999, 70_000, 300_000]) + i)
        s3.put_object(Bucket="reported", Key=key, Body=wrote[key])
    url = _publish(s3, "reported-inventory", "reported/csv", "CSV", _csv_report(_inventory_rows(s3, "reported", set())),
                   "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded", source="reported")
    _, report = pocket_migrate(cluster, source, "plan", "reported", "--inventory", url, "--json")
    assert report["buckets"][0]["method"] == "inventory" and report["buckets"][0]["objects"] == 30
    changed = "r/005 é+%.bin"
    wrote[changed] = rnd.randbytes(4321)                       # overwritten after the report
    s3.put_object(Bucket="reported", Key=changed, Body=wrote[changed])
    s3.put_object(Bucket="reported", Key="r/999 after the report", Body=b"not in the report")
    meter = SourceMeter(source.endpoint)
    try:
        _, copied = pocket_migrate(cluster, dataclasses.replace(source, endpoint=meter.endpoint), "copy", "reported",
                                   "--json")
        listings = [q for method, q, _ in meter.requests if method == "GET" and ("list-type" in q or "versions" in q)]
        assert copied["ok"] and copied["buckets"][0]["copied"] == 30, copied
        assert listings and all(f"prefix={quote_plus(changed).replace('+', '%20')}" in q or
                                f"prefix={quote_plus(changed)}" in q for q in listings), listings
        gw = cluster.client()
        assert {k: gw.get_object(Bucket="reported", Key=k)["Body"].read() for k in wrote} == wrote
        _, found = pocket_migrate(cluster, source, "verify", "reported", "--json", ok=(1,))
        assert {(f["key"], f["problem"]) for f in found["buckets"][0]["findings"]} == \
            {("r/999 after the report", "missing")}
        pocket_migrate(cluster, source, "verify", "reported", "--fix", "--json")
        assert gw.get_object(Bucket="reported", Key="r/999 after the report")["Body"].read() == b"not in the report"
        before = len(meter.requests)
        pocket_migrate(cluster, dataclasses.replace(source, endpoint=meter.endpoint), "copy", "reported", "--list",
                       "--json")
        assert any(m == "GET" and "list-type" in q and "prefix=" not in q for m, q, _ in meter.requests[before:])
    finally:
        meter.close()


def test_report_renders_in_headless_chromium(env, tmp_path):
    """The report opens offline in a real browser: its charts have drawn bars and the
    cost table has a row per bucket and a total."""
    assert CHROMIUM, "chromium is missing: scripts/install-test-tools installs it"
    source, cluster, _ = env
    path = str(tmp_path / "plan.html")
    pocket_migrate(cluster, source, "plan", "photos", "tiny", "docs", "--report", path, "--json")
    with open(path) as f:
        html = f.read()
    assert "http://" not in html.replace(source.endpoint, "") and "https://" not in html and "<script" not in html
    probe = tmp_path / "probe.html"
    probe.write_text(
        "<html><body><iframe id=r src='plan.html' width=1200 height=3000 onload=\"var d=this.contentDocument;"
        "var bars=[...d.querySelectorAll('svg.chart rect')].map(r=>r.getBoundingClientRect().width);"
        "var t=d.getElementById('costs');var rows=[...t.rows].map(r=>[...r.cells].map(c=>c.innerText));"
        "var o=document.createElement('pre');o.id='out';o.textContent=JSON.stringify({charts:"
        "d.querySelectorAll('svg.chart').length,bars:bars,rows:rows,height:t.getBoundingClientRect().height});"
        "document.body.appendChild(o);\"></iframe></body></html>")
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          "--allow-file-access-from-files", f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", f"file://{probe}"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    start = out.stdout.index('<pre id="out">') + len('<pre id="out">')
    seen = json.loads(out.stdout[start:out.stdout.index("</pre>", start)].replace("&quot;", '"').replace("&amp;", "&"))
    assert seen["charts"] == 4                       # the order chart and one histogram per bucket
    assert sum(1 for w in seen["bars"] if w > 0) >= 6 and max(seen["bars"]) > 100
    header, *rows = seen["rows"]
    assert "egress $" in header and "S3 bill ended $/month" in header
    assert [r[0] for r in rows] == ["tiny", "docs", "photos", "total"] and seen["height"] > 50
    assert os.path.getsize(path) < 200_000
