"""A packed record (tombstone, bucket event) that rots on one disk is rewritten by the
scrubber from its copies on other disks, as fragments are rebuilt: `pocket scrub`
reports it rewritten, the disk then holds the original bytes again, and the next scrub
finds nothing."""
import json
import os

from storage.node import packformat

from .disk_checks import check_all, load_objects
from .harness import pocket


def _packed_records(disk_path: str) -> dict[str, tuple[str, int, int]]:
    """record id -> (pack file, payload offset, length) of its newest append."""
    folder = os.path.join(disk_path, "packs")
    found = {}
    for name in packformat.pack_files(folder):
        path = os.path.join(folder, name)
        for e in packformat.scan_pack(path).entries:
            if e.kind == packformat.RECORD:
                found[e.name] = (path, e.offset + packformat.RECORD_HEADER_SIZE, e.length)
    return found


def _read(where: tuple[str, int, int]) -> bytes:
    path, offset, length = where
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_a_corrupt_packed_tombstone_is_rewritten_from_its_copies(six):
    c = six
    s3 = c.client()
    objects = load_objects(s3, "bkt", 6)
    for key in ("o000", "o001"):
        s3.delete_object(Bucket="bkt", Key=key)
        del objects[key]
    c.stop("gateway")
    tombstones = {d: [(r, w) for r, w in sorted(_packed_records(p).items())
                      if json.loads(_read(w)).get("kind") == "tombstone"] for d, p in c.disk_paths.items()}
    disk = next(d for d, found in sorted(tombstones.items()) if found)
    node = disk[:2]
    c.stop(node)
    rec_id, where = tombstones[disk][0]
    good = _read(where)
    path, offset, _ = where
    with open(path, "r+b") as f:               # one bit of its payload rots
        f.seek(offset + len(good) // 2)
        byte = f.read(1)
        f.seek(offset + len(good) // 2)
        f.write(bytes([byte[0] ^ 0x08]))
    c.start_node(node)
    c.start_gateway()

    code, report = pocket(c, "scrub", "--json", ok=(0, 1))
    assert [(r["disk"], r["record"]) for r in report["records_rewritten"]] == [(disk, rec_id)], report
    assert report["records_left"] == []
    assert _read(_packed_records(c.disk_paths[disk])[rec_id]) == good
    code, again = pocket(c, "scrub", "--json")
    assert again["records_rewritten"] == [] and again["records_left"] == []
    check_all(s3, "bkt", objects)
    for key in ("o000", "o001"):
        assert s3.list_objects_v2(Bucket="bkt", Prefix=key)["KeyCount"] == 0
