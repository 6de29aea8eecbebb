"""Upgrades: the disks, index and config written by every earlier release (the folders of
tests/fixtures/upgrade/, made by its make.py) are read by today's code: every object and
version byte-exact with its metadata, deletes still deleted, new writes beside old ones,
a scrub that finds nothing wrong, `pocket upgrade` rewriting them keyed, and an index rebuilt
from the disks alone.

Format 2 releases (HMAC-SHA256, e.g. 0.1.0-9a6557c) are keyed already: `pocket upgrade`
leaves them as they are, and today's code (format 3, keyed BLAKE3) reads them as written.

Releases before keyed checksums accepted any cluster_secret; today's needs 32 bytes or more.
Their archives are unkeyed (format 1), so the operator sets a longer secret on upgrading,
as the test does, and nothing on disk depends on the old one."""
import json
import os
import random
import shutil

import pytest
from botocore.exceptions import ClientError

from storage import layout
from storage.integrity import MIN_SECRET_BYTES

from . import forkserver
from .harness import CLUSTER_SECRET, REPO, ProcCluster

FIXTURES = os.path.join(REPO, "tests", "fixtures", "upgrade")
RELEASES = sorted(d for d in os.listdir(FIXTURES) if os.path.isfile(os.path.join(FIXTURES, d, "expected.json")))


def _body(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _pocket(c, *args, ok=(0,)):
    out = forkserver.run([*args, "--config", c.config], timeout=120)
    assert out.returncode in ok, out.stdout + out.stderr
    return json.loads(out.stdout) if "--json" in args else out.stdout


def _check_everything(s3, expected: dict) -> None:
    for o in expected["objects"]:
        got = s3.get_object(Bucket=o["bucket"], Key=o["key"])
        assert got["Body"].read() == _body(o["size"], o["seed"]), o
        if "metadata" in o:
            assert got["Metadata"] == o["metadata"] and got["ContentType"] == o["content_type"]
        if "tags" in o:
            tags = s3.get_object_tagging(Bucket=o["bucket"], Key=o["key"])["TagSet"]
            assert {t["Key"]: t["Value"] for t in tags} == o["tags"]
    for d in expected["deleted"]:
        with pytest.raises(ClientError, match="NoSuchKey|404"):
            s3.head_object(Bucket=d["bucket"], Key=d["key"])
    for v in expected["versions"]:
        got = s3.get_object(Bucket=v["bucket"], Key=v["key"], VersionId=v["version_id"])
        assert got["Body"].read() == _body(v["size"], v["seed"])
    if expected["versions"]:
        v = expected["versions"][0]
        listed = s3.list_object_versions(Bucket=v["bucket"], Prefix=v["key"])
        assert {x["VersionId"] for x in listed["Versions"]} == {x["version_id"] for x in expected["versions"]}
        assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [expected["delete_marker"]]
    by_bucket = {}
    for o in expected["objects"]:
        by_bucket.setdefault(o["bucket"], set()).add(o["key"])
    for bucket, keys in by_bucket.items():
        listed = {x["Key"] for x in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
        assert keys <= listed and not {d["key"] for d in expected["deleted"]} & listed


@pytest.mark.parametrize("release", RELEASES)
def test_todays_code_reads_what_an_earlier_release_wrote(release, tmp_path):
    root = str(tmp_path / release)
    shutil.copytree(os.path.join(FIXTURES, release), root)
    with open(os.path.join(root, "expected.json")) as f:
        expected = json.load(f)
    _longer_secret(os.path.join(root, "pocket.toml"))
    c = ProcCluster.existing(root)
    try:
        c.start()
        s3 = c.client()
        _check_everything(s3, expected)
        s3.put_object(Bucket="plain", Key="written-after-upgrade", Body=_body(70_000, 7))
        expected["objects"].append({"bucket": "plain", "key": "written-after-upgrade", "size": 70_000, "seed": 7})
        c.stop("gateway")

        report = _pocket(c, "scrub", "--json")
        assert not report["corrupt"] and not report["missing"] and not report["orphans_removed"]
        upgraded = _pocket(c, "upgrade", "--json")
        if _unkeyed(os.path.join(FIXTURES, release)):   # format 1: every version is rewritten keyed
            assert upgraded["upgraded"] > 0 and upgraded["left"] == [], upgraded
        else:                # keyed already (format 2, HMAC): left as it is, and still read
            assert upgraded["upgraded"] == 0 and upgraded["keyed"] > 0 and upgraded["left"] == [], upgraded
        shutil.rmtree(os.path.join(root, "index"))
        _pocket(c, "index", "rebuild")
        c.start()
        _check_everything(c.client(), expected)
    finally:
        c.close()


def _unkeyed(root: str) -> bool:
    """Whether a fixture's archives are format 1 (before keyed checksums)."""
    for folder, _, files in os.walk(os.path.join(root, "disks")):
        for name in files:
            if "archives" in folder:
                with open(os.path.join(folder, name), "rb") as f:
                    return layout.ArchiveHeader.unpack(f.read(layout.HEADER_SIZE), layout.ANY_FORMAT).fmt == \
                        layout.LEGACY_FORMAT
    raise AssertionError(f"no archive file under {root}")


def _longer_secret(path: str) -> None:
    """What an operator of a release before keyed checksums does first: a secret of 32+ bytes."""
    import tomllib
    with open(path, "rb") as f:
        old = tomllib.load(f)["cluster_secret"]
    if len(old.encode()) >= MIN_SECRET_BYTES:
        return
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace(f'cluster_secret = "{old}"', f'cluster_secret = "{CLUSTER_SECRET}"', 1))
