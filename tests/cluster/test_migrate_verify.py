"""`pocket migrate verify` finds what went wrong in Pocket behind the migrator's back (an
object deleted, fragments rotted) and `--fix` repairs it from the source."""
from __future__ import annotations

import json
import os
import random

import pytest

from tests.loaded_modules import loaded, run_pocket

from .archives import (archive_parts, archives_of, flip_archive_bit, flip_last_payload_byte, flip_payload_byte,
                       read_archive)
from .harness import QUIET, ProcCluster, wait_for
from .migrate_data import seed_plain, seed_versioned, snapshot
from .sources import pocket_migrate, start_seaweedfs


@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    with start_seaweedfs(str(tmp_path_factory.mktemp("weed"))) as source:
        seed_plain(source.client(), "plain")
        seed_versioned(source.client(), "history")
        yield source


@pytest.fixture
def pocket(tmp_path):
    # No background scrub or repair: the damage these tests plant must still be there for
    # verify to find and --fix to mend (a gateway repair racing --fix made the count flaky).
    c = ProcCluster(str(tmp_path / "pocket"), embedded=True,
                    sections=QUIET).start()
    yield c
    c.close()


def _by_index(refs: list[str], index: int) -> str:
    """The largest archive of fragment `index` among `refs` (of a multipart object: a big part's)."""
    return max((r for r in refs if archive_parts(r)[1].endswith(f".{index}")), key=lambda r: len(read_archive(r)))


def _problems(report) -> dict:
    return {(f["key"], f["problem"]) for b in report["buckets"] for f in b["findings"]}


def test_verify_finds_deleted_and_rotted_objects_and_fix_repairs_them(weed, pocket):
    pocket_migrate(pocket, weed, "copy", "plain", "history", "--json")
    _, report = pocket_migrate(pocket, weed, "verify", "plain", "history", "--deep", "--json")
    assert report["clean"] and [b["checked"] for b in report["buckets"]] == [7, 8]
    assert [b["deep_read"] for b in report["buckets"]] == [7, 6]          # delete markers have no bytes
    s3, rng = pocket.client(), random.Random(5)
    s3.delete_object(Bucket="plain", Key="small.txt")                     # gone behind the migrator's back
    unreadable = archives_of(pocket, "plain", "dir/with space.dat")       # 300 kB: ec 4+2, 6 fragments
    assert len(unreadable) == 6
    for ref in unreadable[:3]:                                            # 3 bad of 6: cannot be decoded
        flip_payload_byte(ref, rng)
    rotted = archives_of(pocket, "plain", "a/b/c/deep.json")
    flip_payload_byte(rotted[0], rng)                                     # 1 bad of 6: still decodes
    read_rot = _by_index(archives_of(pocket, "plain", "dir/ünïcødé ✓.bin"), 0)    # the copy a read uses
    flip_payload_byte(read_rot, rng)
    # what a read never looks at: a data archive's header, a copy the read does not need
    head_rot = _by_index(archives_of(pocket, "plain", "big/odd-parts.bin"), 1)
    flip_archive_bit(head_rot, 10)
    copy_rot = _by_index(archives_of(pocket, "plain", "pct%20not+plus.dat"), 2)  # replica:3, copy 2
    flip_payload_byte(copy_rot, rng)
    history = snapshot(weed.client(), "history")
    doomed = next(k for k, v in history["versions"].items() if k[0] == "doc.txt" and not v.get("delete_marker")
                  and k[1] != history["order"]["doc.txt"][0])
    s3.delete_object(Bucket="history", Key="doc.txt", VersionId=doomed[1])  # an old version lost

    # without --deep: what listings and HEADs show
    _, shallow = pocket_migrate(pocket, weed, "verify", "plain", "history", "--json", ok=(1,))
    assert _problems(shallow) == {("small.txt", "missing"), ("doc.txt", "missing")}
    _, deep = pocket_migrate(pocket, weed, "verify", "plain", "history", "--deep", "--json", ok=(1,))
    assert _problems(deep) == {("small.txt", "missing"), ("doc.txt", "missing"),
                               ("dir/with space.dat", "unreadable"), ("a/b/c/deep.json", "damaged"),
                               ("big/odd-parts.bin", "damaged"), ("pct%20not+plus.dat", "damaged"),
                               ("dir/ünïcødé ✓.bin", "damaged")}
    _, fixed = pocket_migrate(pocket, weed, "verify", "plain", "history", "--deep", "--fix", "--json")
    assert fixed["clean"] and sum(b["fixed"] for b in fixed["buckets"]) == 7
    _, again = pocket_migrate(pocket, weed, "verify", "plain", "history", "--deep", "--json")
    assert again["clean"]
    for bucket in ("plain", "history"):
        assert snapshot(pocket.client(), bucket) == snapshot(weed.client(), bucket)


def test_verify_records_its_result_and_clears_dirty_keys_it_found_equal(weed, pocket):
    """What cutover relies on: the last verify in the bucket's record, and keys written
    since their last verify ("dirty") cleared only when checked equal and not written again."""
    from storage.index import migrations as M
    from storage.index.index import Index
    from storage.index.lmdb_backend import LmdbBackend
    from storage.migrate import state

    pocket_migrate(pocket, weed, "plan", "plain", "--json")
    pocket_migrate(pocket, weed, "copy", "plain", "--json")
    index = Index(LmdbBackend(f"{pocket.root}/index"))   # beside the gateway's, as one-shot commands open it
    try:
        for key in ("small.txt", "empty", "never-existed"):
            index.write(lambda ops, key=key: M.mark_dirty(ops, "plain", key))
        pocket.client().delete_object(Bucket="plain", Key="small.txt")
        _, report = pocket_migrate(pocket, weed, "verify", "plain", "--sample", "100", "--json", ok=(1,))
        (b,) = report["buckets"]
        assert b["deep_read"] == b["checked"] - 1 == 6      # every version present read in full
        assert b["dirty_cleared"] == 2
        with index.read() as ops:
            assert [k for k, _ in M.dirty(ops, "plain")] == ["small.txt"]
        record = state.load(index, "plain")
        assert record.last_verify["clean"] is False and record.last_verify["missing"] == 1
        pocket_migrate(pocket, weed, "verify", "plain", "--fix", "--json")
        with index.read() as ops:
            assert M.dirty(ops, "plain") == []
        assert state.load(index, "plain").last_verify["clean"] is True
    finally:
        index.close()


def test_each_tier_sees_what_its_documentation_says(weed, pocket):
    """The listing tier (--quick) sees a rewrite at the source by its Last-Modified but
    not tags changed on either side (S3 changes neither ETag nor Last-Modified for tags);
    the default HEADs every version and sees all three."""
    src, gw = weed.client(), pocket.client()
    seed_plain(src, "tiers", seed=3)
    pocket_migrate(pocket, weed, "copy", "tiers", "--json")
    src.put_object_tagging(Bucket="tiers", Key="small.txt", Tagging={"TagSet": [{"Key": "env", "Value": "test"}]})
    gw.put_object_tagging(Bucket="tiers", Key="empty", Tagging={"TagSet": [{"Key": "only", "Value": "pocket"}]})
    before = src.head_object(Bucket="tiers", Key="a/b/c/deep.json")["LastModified"]

    def rewritten():            # new metadata, same bytes: a new Last-Modified (S3 keeps it to the second)
        src.copy_object(Bucket="tiers", Key="a/b/c/deep.json", CopySource={"Bucket": "tiers", "Key": "a/b/c/deep.json"},
                        MetadataDirective="REPLACE", Metadata={"changed": "at the source"})
        return (src.head_object(Bucket="tiers", Key="a/b/c/deep.json")["LastModified"] - before).total_seconds() >= 1
    wait_for("a rewrite at the source a second after the first write", rewritten, every=0.3)

    _, listed = pocket_migrate(pocket, weed, "verify", "tiers", "--quick", "--json", ok=(1,))
    assert listed["buckets"][0]["tier"] == "listing" and listed["buckets"][0]["headed"] == 0
    assert _problems(listed) == {("a/b/c/deep.json", "different")}
    _, headed = pocket_migrate(pocket, weed, "verify", "tiers", "--json", ok=(1,))
    assert headed["buckets"][0]["headed"] == 6        # the rewritten one differs by its listing already
    assert _problems(headed) == {("a/b/c/deep.json", "different"), ("small.txt", "different"),
                                 ("empty", "different")}
    why = {f["key"]: f["why"] for f in headed["buckets"][0]["findings"]}
    assert why["small.txt"].startswith("tags:") and why["empty"].startswith("tags:")


def test_verify_split_over_workers_finds_what_one_process_finds(weed, pocket):
    """Versions shared out over forked workers (verify_workers.py): what a child finds
    reaches the report, the record and the exit status as the parent's own findings do."""
    pocket_migrate(pocket, weed, "copy", "plain", "history", "--json")
    # shares go largest first (split()): with 3 workers big/odd-parts.bin is the parent's,
    # a/b/c/deep.json the first child's and dir/with space.dat the second's
    flip_payload_byte(_by_index(archives_of(pocket, "plain", "dir/with space.dat"), 5), random.Random(7))  # parity
    flip_last_payload_byte(_by_index(archives_of(pocket, "plain", "a/b/c/deep.json"), 3))   # the very last bytes
    history = snapshot(weed.client(), "history")
    doomed = next(k for k, v in history["versions"].items() if k[0] == "doc.txt" and not v.get("delete_marker")
                  and k[1] != history["order"]["doc.txt"][0])
    pocket.client().delete_object(Bucket="history", Key="doc.txt", VersionId=doomed[1])   # an old version lost
    want = {("dir/with space.dat", "damaged"), ("a/b/c/deep.json", "damaged"), ("doc.txt", "missing")}
    reports = {}
    for workers in ("1", "3"):
        _, reports[workers] = pocket_migrate(pocket, weed, "verify", "plain", "history", "--deep", "--workers",
                                             workers, "--json", ok=(1,))
        assert _problems(reports[workers]) == want
        assert [b["workers"] for b in reports[workers]["buckets"]] == [int(workers)] * 2
    for field in ("checked", "headed", "deep_read", "missing", "mismatched"):
        assert [b[field] for b in reports["3"]["buckets"]] == [b[field] for b in reports["1"]["buckets"]]
    _, headed = pocket_migrate(pocket, weed, "verify", "plain", "history", "--workers", "2", "--json", ok=(1,))
    assert _problems(headed) == {("doc.txt", "missing")} and headed["buckets"][0]["headed"] == 7


def test_deep_verify_of_mapped_archives_finds_rot_in_a_data_and_a_parity_record(weed, pocket):
    """Parts of 4 MiB and more on attached disks are checked in a mapping (deep_blocks.py):
    a data record that fails its checksum is read around (parity decoded), a parity record
    that fails is found by the archive checks, and both are counted."""
    pocket_migrate(pocket, weed, "copy", "plain", "--json")
    rng = random.Random(11)
    flip_payload_byte(_by_index(archives_of(pocket, "plain", "big/odd-parts.bin"), 0), rng)   # a 5 MiB part's
    flip_payload_byte(_by_index(archives_of(pocket, "plain", "big/odd-parts.bin"), 5), rng)
    _, deep = pocket_migrate(pocket, weed, "verify", "plain", "--deep", "--json", ok=(1,))
    assert _problems(deep) == {("big/odd-parts.bin", "damaged")}
    assert deep["buckets"][0]["findings"][0]["why"].startswith("2 fragment(s) corrupt")


def test_deep_verify_through_node_processes_finds_what_it_finds_on_attached_disks(weed, tmp_path):
    """With node processes the disks are read over the node API, not mapped (deep_blocks.py):
    the same damage is found, data and parity, and equal bytes are equal."""
    nodes = ProcCluster(str(tmp_path / "nodes"), sections=QUIET).start()
    try:
        pocket_migrate(nodes, weed, "copy", "plain", "--json")
        _, report = pocket_migrate(nodes, weed, "verify", "plain", "--deep", "--json")
        assert report["clean"] and report["buckets"][0]["deep_read"] == 7
        rng = random.Random(9)
        flip_payload_byte(_by_index(archives_of(nodes, "plain", "big/odd-parts.bin"), 0), rng)    # data: decoded
        flip_payload_byte(_by_index(archives_of(nodes, "plain", "dir/with space.dat"), 4), rng)   # parity
        flip_last_payload_byte(_by_index(archives_of(nodes, "plain", "a/b/c/deep.json"), 3))
        _, deep = pocket_migrate(nodes, weed, "verify", "plain", "--deep", "--json", ok=(1,))
        assert _problems(deep) == {("big/odd-parts.bin", "damaged"), ("dir/with space.dat", "damaged"),
                                   ("a/b/c/deep.json", "damaged")}
    finally:
        nodes.close()


def test_quick_verify_runs_without_an_event_loop(weed, pocket, tmp_path):
    """Nothing past the listings: no asyncio (~15 ms of start-up), no botocore, no aiohttp."""
    pocket_migrate(pocket, weed, "copy", "plain", "--json")
    proc, code, modules = run_pocket(tmp_path / "modules.json", ["migrate", "verify", "plain", "--quick", "--json",
                                                                 "--config", pocket.config, "--source-endpoint",
                                                                 weed.endpoint], {**os.environ, **weed.credentials_env()})
    assert code == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["buckets"][0]["checked"] == 7
    assert loaded(modules, "asyncio", "botocore", "aiohttp") == []
