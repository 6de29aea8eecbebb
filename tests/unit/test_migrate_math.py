"""The arithmetic of a migration: egress tiers, bandwidth, key ranges, internal version ids,
the suggested order and S3 Inventory rows."""
from __future__ import annotations

import gzip

import pytest

from storage.migrate import estimate, manifest, ranges, version_ids


def test_egress_cost_follows_the_tiers():
    p = estimate.Prices()
    assert estimate.egress_cost(0, p) == 0
    assert estimate.egress_cost(int(1e12), p) == pytest.approx(1000 * 0.09)            # 1 TB: first tier only
    # 60 TB: 10 TB at 0.09, 40 TB at 0.085, 10 TB at 0.07
    assert estimate.egress_cost(int(60e12), p) == pytest.approx(10_000 * 0.09 + 40_000 * 0.085 + 10_000 * 0.07)
    assert estimate.egress_cost(int(1e15), p) == pytest.approx(900 + 3400 + 7000 + 850_000 * 0.05)


def test_bandwidth_units():
    assert estimate.parse_bandwidth("1Gbit") == 125e6
    assert estimate.parse_bandwidth("100MB/s") == 100e6
    assert estimate.parse_bandwidth("80MiB/s") == 80 * 2 ** 20
    assert estimate.parse_bandwidth("500 Mbps") == 62.5e6
    with pytest.raises(ValueError):
        estimate.parse_bandwidth("fast")


def test_ranges_cover_every_key_once_in_s3_order():
    keys = [f"k{i:04d}" for i in range(95)] + ["é", "z", "Z", "a/b"]
    bounds = ranges.range_bounds(keys, per_range=10)
    assert bounds[0][0] == "" and bounds[-1][1] is None and len(bounds) == 10
    ordered = sorted(keys, key=str.encode)
    for key in keys:   # exactly one range holds each key: start_after < key <= end
        holders = [b for b in bounds if key.encode() > b[0].encode() and (b[1] is None or key.encode() <= b[1].encode())]
        assert len(holders) == 1, key
    assert [b[1] for b in bounds[:-1]] == ordered[9:-1:10]
    assert ranges.range_bounds([]) == [("", None)]
    # by default ranges hold at least MIN_RANGE keys (each is listed on its own), about 256 of them
    assert len(ranges.range_bounds(keys)) == 1
    assert len(ranges.range_bounds([f"k{i:06d}" for i in range(1000)])) == 10
    assert len(ranges.range_bounds([f"k{i:06d}" for i in range(100_000)])) == 256


def test_large_objects_are_cut_into_ranges_of_their_own_so_workers_share_them():
    MIB = 1 << 20
    large = {f"big/{i}": 128 * MIB for i in range(8)}
    assert ranges.range_bounds(list(large), sizes=large) == [("", "big/0")] + [
        (f"big/{i}", f"big/{i + 1}") for i in range(6)] + [("big/6", None)]
    # 32 MiB of bytes close a range like MIN_RANGE keys do; small objects still go 100 to a range
    mixed = {f"k{i:04d}": (20 * MIB if i % 50 == 0 else 4096) for i in range(1000)}
    bounds = ranges.range_bounds(list(mixed), sizes=mixed)
    assert 10 < len(bounds) < 30 and bounds[-1][1] is None
    for start, end in bounds[:-1]:
        inside = [k for k in mixed if start < k <= end]
        assert len(inside) == 100 or sum(mixed[k] for k in inside) >= ranges.RANGE_BYTES
    # a huge bucket still makes about RANGES ranges: bytes per range grow with it
    huge = {f"k{i:06d}": 1 << 30 for i in range(10_000)}
    assert ranges.RANGES - 10 <= len(ranges.range_bounds(list(huge), sizes=huge)) <= ranges.RANGES


def test_internal_ids_keep_history_order_within_one_second():
    history = [{"last_modified": 1700000000.0}] * 3 + [{"last_modified": 1700000001.5}]
    ids = version_ids.internal_ids(history)
    assert ids == sorted(ids) and len(set(ids)) == 4 and all(len(i) == 32 for i in ids)
    assert int(ids[0][:16], 16) == 1700000000 * 10 ** 9
    assert int(ids[3][:16], 16) == 1700000001.5 * 10 ** 9
    assert int(ids[1][:16], 16) - int(ids[0][:16], 16) == version_ids.ID_STEP     # room for a re-copy between


def test_suggested_order_is_small_and_quiet_first():
    stats = [{"bucket": "big-busy", "version_bytes": 10 ** 12, "written_last_30_days": 10 ** 6},
             {"bucket": "small-quiet", "version_bytes": 10, "written_last_30_days": 0},
             {"bucket": "mid", "version_bytes": 10 ** 6, "written_last_30_days": 5}]
    assert estimate.suggested_order(stats) == ["small-quiet", "mid", "big-busy"]


def test_inventory_csv_rows_are_url_decoded():
    data = gzip.compress(b'"src","dir/a+b%25c%20%C3%A9","v1","true","false","12","2024-01-02T03:04:05.000Z",'
                        b'"0123456789abcdef0123456789abcdef","DEEP_ARCHIVE"\n')
    columns = ["Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", "Size", "LastModifiedDate", "ETag",
               "StorageClass"]
    (row,) = list(manifest._csv_rows(data, columns))
    assert row.key == "dir/a b%c é" and row.version_id == "v1" and row.size == 12
    assert row.storage_class == "DEEP_ARCHIVE" and row.is_latest and not row.delete_marker
    assert row.last_modified == 1704164645.0
    with pytest.raises(manifest.ManifestError):
        manifest.parse_url("https://bucket/manifest.json")


def test_the_copy_progress_eta_of_a_resumed_pass_counts_what_earlier_passes_copied():
    from storage.migrate.tally import Tally
    # 24 MB in all, 12 MB copied by the pass that was interrupted; this one copied 4 MB in 2 s
    resumed = Tally("b", started=100.0, total_bytes=24_000_000, earlier_bytes=12_000_000, bytes=4_000_000)
    assert resumed.eta(now=102.0) == pytest.approx(4.0)       # 8 MB left at 2 MB/s, not 10 s
    fresh = Tally("b", started=100.0, total_bytes=24_000_000, bytes=4_000_000)
    assert fresh.eta(now=102.0) == pytest.approx(10.0)
    assert Tally("b", started=100.0, total_bytes=0, bytes=4_000_000).eta(now=102.0) is None   # total unknown
    assert Tally("b", started=100.0, total_bytes=24_000_000).eta(now=102.0) is None           # nothing moved yet
    done = Tally("b", started=100.0, total_bytes=24_000_000, earlier_bytes=20_000_000, bytes=5_000_000)
    assert done.eta(now=102.0) == 0
