"""What the scrub, repair and disk probes share (test_repair.py, test_disks.py,
test_disk_restore*.py, test_record_scrub.py, ...; split into files so that xdist runs
them side by side): a load of objects of every size class and the check that each reads
back byte-exact, and the two views of a disk, `pocket disk list`'s and the gateway's.

Their clusters (`quiet_cluster`, `six`, `seven`) are conftest.py fixtures, with harness.QUIET."""
from __future__ import annotations

from .archives import archive_parts
from .conftest import payload
from .harness import metric, pocket

SEG = 1 << 20


def load_objects(s3, bucket: str, count: int) -> dict[str, bytes]:
    """A new bucket of `count` objects cycling through the size classes (one byte, packed,
    a segment less one, several segments): {key: body}."""
    s3.create_bucket(Bucket=bucket)
    sizes = [1, 700, 5000, 100_000, 200_000, SEG - 1, SEG + 5, 2 * SEG + 3, 3 * SEG]
    objects = {}
    for i in range(count):
        data = payload(sizes[i % len(sizes)])
        s3.put_object(Bucket=bucket, Key=f"o{i:03d}", Body=data)
        objects[f"o{i:03d}"] = data
    return objects


def check_all(s3, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key


def change_while_away(s3, objects: dict[str, bytes]) -> list[str]:
    """Delete a third of the objects and overwrite a third; returns the deleted keys."""
    keys = sorted(objects)
    deleted = keys[0::3]
    for key in deleted:
        s3.delete_object(Bucket="bkt", Key=key)
        del objects[key]
    for n, key in enumerate(keys[1::3]):
        objects[key] = payload(len(objects[key]) + 7, seed=f"overwrite-{n}")
        s3.put_object(Bucket="bkt", Key=key, Body=objects[key])
    return deleted


def stop_two_more_and_check(c, s3, objects, keep: set[str]) -> None:
    """Stop two more nodes (not in `keep`): reads must still see every object byte-exact."""
    victims = [n for n in c.node_ids if n in c.procs and n not in keep][:2]
    for n in victims:
        c.stop(n)
    check_all(s3, "bkt", objects)


def disk_rows(c) -> dict[str, dict]:
    """`pocket disk list --json` by disk id."""
    _, rows = pocket(c, "disk", "list", "--json")
    return {r["id"]: r for r in rows}


def archives_on(c, disk_id: str) -> set[str]:
    return {name for disk, name in map(archive_parts, c.archive_files()) if disk == disk_id}


def in_state(endpoint: str, disk: str, state: str) -> bool:
    """The gateway's view of a disk's state, over HTTP (no process per look)."""
    return metric(endpoint, "pocket_disk_state", f'disk="{disk}",state="{state}"') == 1
