"""Probe tests for scrub and repair: rot, lose and orphan fragment archives of a real
cluster, then check that `pocket scrub` finds exactly that, `pocket repair` (or the
gateway's own repairer) puts back archives identical to the originals, and every
object still reads back.
"""
import asyncio
import os
import random
import re
import shutil
import signal
import time
import urllib.request
from collections import defaultdict


from storage import layout

from storage.node.store import DiskStore

from .archives import archive_parts, archive_span, flip_payload_byte, read_archive
from .conftest import payload
from .crash_checks import wait_repaired
from .disk_checks import SEG, check_all, load_objects
from .harness import ProcCluster, pocket, wait_for



def _lose_while_stopped(c, ref: str) -> None:
    """A disk loses one archive: its file, or (for a small one) its record in a pack."""
    if "#" not in ref:
        os.unlink(ref)
        return
    disk, name = archive_parts(ref)

    async def go():
        store = DiskStore(disk, c.disk_paths[disk]).open()
        try:
            assert await store.delete_archive(name)
        finally:
            store.close()
    asyncio.run(go())


def _archives_by_version(c) -> dict[str, set[int]]:
    out = defaultdict(set)
    for ref in c.archive_files():
        vid, _, idx = archive_parts(ref)[1].partition(".")
        out[vid].add(int(idx))
    return out


def test_bit_rot_is_found_by_scrub_and_repaired_byte_identical(quiet_cluster, tmp_path):
    c = quiet_cluster
    s3 = c.client()
    objects = load_objects(s3, "rot", 30)
    rng = random.Random(7)
    by_version = defaultdict(list)
    for ref in sorted(c.archive_files()):
        by_version[archive_parts(ref)[1].partition(".")[0]].append(ref)
    victims = [rng.choice(by_version[vid]) for vid in rng.sample(sorted(by_version), 5)]
    originals = {ref: read_archive(ref) for ref in victims}
    for ref in victims:
        flip_payload_byte(ref, rng)

    check_all(s3, "rot", objects)          # reads decode around the rot

    code, report = pocket(c, "scrub", "--json", ok=(1,))
    found = {(r["disk"], r["archive"]) for r in report["corrupt"]}
    want = {archive_parts(ref) for ref in victims}
    assert found == want
    assert report["missing"] == [] and report["orphans_removed"] == []
    assert report["bytes_verified"] == report["bytes_total"] > 0

    code, fixed = pocket(c, "repair", "--json")
    assert fixed["fragments"] == 5 and fixed["failed"] == [] and fixed["remaining"] == 0
    for ref, original in originals.items():
        assert read_archive(ref) == original, f"{ref} was not rebuilt byte for byte"

    code, again = pocket(c, "scrub", "--json")
    assert again["corrupt"] == [] and again["missing"] == []
    check_all(s3, "rot", objects)


def test_missing_fragment_and_status(quiet_cluster, tmp_path):
    c = quiet_cluster
    s3 = c.client()
    objects = load_objects(s3, "miss", 8)   # up to 2 segments + 3 bytes: a ~512 KiB fragment, a file
    _, before = pocket(c, "status", "--json")
    assert len(before["disks"]) == 6 and before["disks_up"] == 6
    assert before["objects"] == 8 and before["objects_at_risk"] == 0
    assert "MTTDL" in before["durability"]["formula"]
    assert 0.99999 < before["durability"]["policies"]["ec"]["annual_durability"] < 1

    victim = max(sorted(c.archive_files()), key=lambda ref: archive_span(ref)[2])
    assert "#" not in victim, "the largest archive should be a file of its own"
    keep = tmp_path / "keep"
    shutil.copyfile(victim, keep)
    os.unlink(victim)

    code, report = pocket(c, "scrub", "--json", ok=(1,))
    assert [r["archive"] for r in report["missing"]] == [os.path.basename(victim)]
    assert report["corrupt"] == []

    _, risky = pocket(c, "status", "--json")
    assert risky["repair_queue"] == 1 and risky["objects_at_risk"] == 1
    row = next(r for r in risky["at_risk"] if r["shape"] == "4+2" and r["fragments_left"] == 5)
    assert row["objects"] == 1

    _, fixed = pocket(c, "repair", "--json")
    assert fixed["fragments"] == 1
    with open(victim, "rb") as a, open(keep, "rb") as b:
        assert a.read() == b.read()

    _, after = pocket(c, "status", "--json")
    assert after["repair_queue"] == 0 and after["objects_at_risk"] == 0
    assert after["last_scrub"]["missing"] == 1 and after["repair_stats"]["fragments"] == 1
    check_all(s3, "miss", objects)


def test_node_loss_is_repaired_by_the_gateway(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), sections={"scrub": {"enabled": False},
                                                         "repair": {"interval": 0.5}})
    c.start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="loss")
        c.signal(c.node_ids[0], signal.SIGKILL)
        objects = {}
        for i, size in enumerate([10, 150_000, SEG, 2 * SEG + 1, 3 * SEG, 0]):
            objects[f"k{i}"] = payload(size)
            s3.put_object(Bucket="loss", Key=f"k{i}", Body=objects[f"k{i}"])
        # status asks the gateway; with several workers the one answering may learn of the
        # dead node at its next heartbeat rather than from a failed write of its own
        degraded = {}

        def seen_down() -> bool:
            nonlocal degraded
            _, degraded = pocket(c, "status", "--json")
            return degraded["disks_down"] == ["n1d1"]
        wait_for("status to show n1d1 down", seen_down, timeout=30)
        assert degraded["repair_queue"] >= 4     # every ec:4+2 object lacks its fragment on n1d1
        c.start_node(c.node_ids[0])
        st = wait_repaired(c, timeout=30)
        assert st["repair_queue"] == 0, st["at_risk"]
        versions = _archives_by_version(c)
        assert len(versions) == len(objects)
        for vid, indexes in versions.items():
            assert indexes in ({0, 1, 2}, set(range(6))), (vid, indexes)
        assert sum(len(v) == 6 for v in versions.values()) == 4
        check_all(s3, "loss", objects)
        with urllib.request.urlopen(c.endpoint + "/_pocket/metrics") as r:
            metrics = r.read().decode()
        assert "pocket_repair_queue_length 0.0" in metrics
        repaired = float(re.search(r"^pocket_repaired_fragments_total (\S+)$", metrics, re.M).group(1))
        assert repaired >= 4
        code, clean = pocket(c, "scrub", "--json")
        assert clean["corrupt"] == [] and clean["missing"] == []
    finally:
        c.close()


def _fake_archive(c, bucket: str, key: str, age: float, copied: float | None = None) -> str:
    """A whole, valid fragment archive of a version the index never heard of (`copied`:
    stored then by `pocket migrate copy`, its id as old as the source's Last-Modified)."""
    vid = f"{int((time.time() - age) * 1e9):016x}{os.urandom(8).hex()}"
    data = b"orphan" * 1000
    manifest = {"bucket": bucket, "key": key, "version_id": vid, "size": len(data), "k": 1, "m": 2,
                "segment_size": SEG, "policy": "replica", "volume": "w3-0000", "disks": [],
                **({"copied": copied} if copied else {})}
    body = (layout.ArchiveHeader(vid, 0, 1, 2, SEG, SEG).pack() + layout.pack_record(data)
            + layout.pack_trailer(manifest))
    name = layout.archive_name(vid, 0)
    folder = os.path.join(c.disk_paths["n2d1"], "archives", name[30:32])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(body)
    return name


def test_orphans_older_than_the_grace_period_are_removed(quiet_cluster):
    c = quiet_cluster
    s3 = c.client()
    objects = load_objects(s3, "orph", 4)
    old = _fake_archive(c, "orph", "ghost-old", age=600)
    young = _fake_archive(c, "orph", "ghost-young", age=0)
    # a migrated copy of a version last modified at the source long ago, committing now
    copying = _fake_archive(c, "orph", "ghost-copying", age=10 ** 7, copied=time.time())
    before = {archive_parts(ref)[1] for ref in c.archive_files()}
    assert {old, young, copying} <= before

    # a grace between the two ages with minutes to spare: a slow pass (a loaded machine took
    # over 10 s, the cluster's grace) must not make the young one old
    code, report = pocket(c, "scrub", "--orphan-grace", "300", "--json")
    assert [r["archive"] for r in report["orphans_removed"]] == [old]
    assert report["orphans_young"] == 2
    assert {archive_parts(ref)[1] for ref in c.archive_files()} == before - {old}
    check_all(s3, "orph", objects)


def test_commands_work_with_the_cluster_stopped(quiet_cluster, tmp_path):
    c = quiet_cluster
    objects = load_objects(c.client(), "cold", 4)
    c.close()                                   # gateway and every node stopped
    victim = max(sorted(c.archive_files()), key=lambda ref: archive_span(ref)[2])
    keep = read_archive(victim)
    _lose_while_stopped(c, victim)
    _, report = pocket(c, "scrub", "--json", ok=(1,))
    assert [r["archive"] for r in report["missing"]] == [archive_parts(victim)[1]]
    _, st = pocket(c, "status", "--json")
    assert not st["gateway"]["running"] and st["disks_up"] == 6 and st["objects_at_risk"] == 1
    assert {d["opened"] for d in st["disks"]} == {"folder"}
    _, fixed = pocket(c, "repair", "--json")
    assert fixed["fragments"] == 1 and fixed["remaining"] == 0
    # a one-shot command writes the rebuilt archive as a file, wherever the lost copy lived
    rebuilt = [r for r in c.archive_files() if archive_parts(r) == archive_parts(victim)]
    assert len(rebuilt) == 1 and read_archive(rebuilt[0]) == keep
    c.start()
    check_all(c.client(), "cold", objects)


def test_stray_copies_off_their_slot_are_removed(quiet_cluster):
    """A copy of a live fragment on a disk that does not hold its slot (what a slot move
    leaves when an upload outlived its wait) is garbage once the slot's own copy is good;
    the slot's copy and the object stay."""
    c = quiet_cluster
    s3 = c.client()
    objects = load_objects(s3, "stray", 9)
    files = sorted(ref for ref in c.archive_files() if "#" not in ref)   # whole-file archives
    ref = files[0]
    disk, name = archive_parts(ref)
    other = next(d for d in sorted(c.disk_paths) if d != disk)
    copy = os.path.join(c.disk_paths[other], os.path.relpath(ref, c.disk_paths[disk]))
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    shutil.copyfile(ref, copy)
    before = c.archive_files()

    code, report = pocket(c, "scrub", "--json", "--orphan-grace", "0")
    assert [(r["disk"], r["archive"]) for r in report["strays_removed"]] == [(other, name)]
    assert report["missing"] == [] and report["corrupt"] == [] and report["orphans_removed"] == []
    assert c.archive_files() == before - {copy}
    assert os.path.exists(ref)
    check_all(s3, "stray", objects)
    code, report = pocket(c, "scrub", "--json", "--orphan-grace", "0")   # nothing left to do
    assert report["strays_removed"] == [] and report["missing"] == []
