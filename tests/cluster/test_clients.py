"""Real S3 clients other than boto3 and the AWS CLI: rclone, s3cmd and restic, full round trips.

All three come from Debian (`make test` installs them via scripts/install-test-tools); they are the tools an ops
team already points at S3, so they must work unchanged against Pocket. restic talks S3 through minio-go, the
client library of MinIO's own `mc` and of many Go programs.
"""
import filecmp
import json
import os
import shutil
import subprocess

import pytest

from .conftest import payload
from .harness import ACCESS_KEY, SECRET_KEY



@pytest.fixture(autouse=True)
def _tools():
    missing = [t for t in ("rclone", "s3cmd", "restic") if not shutil.which(t)]
    assert not missing, f"{missing} not installed: run scripts/install-test-tools (make test does)"


def _tree(root, files):
    for rel, size in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(payload(size))


FILES = {"a.txt": 10, "dir/b.bin": 300_000, "dir/sub/c.bin": 6 * 1024 * 1024 + 1, "empty": 0,
         "space name.txt": 77}


def _same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, (cmp.left_only, cmp.right_only,
                                                                            cmp.diff_files)
    for sub in cmp.common_dirs:
        _same_tree(os.path.join(a, sub), os.path.join(b, sub))


def _rclone(cluster, tmp_path):
    """`rclone(*args)` with a remote `pocket:` pointing at the cluster; returns its stdout."""
    conf = tmp_path / "rclone.conf"
    conf.write_text(f"[pocket]\ntype = s3\nprovider = Other\naccess_key_id = {ACCESS_KEY}\n"
                    f"secret_access_key = {SECRET_KEY}\nendpoint = {cluster.endpoint}\nregion = us-east-1\n")
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # rclone refuses to start with it

    def rclone(*args):
        out = subprocess.run(["rclone", "--config", str(conf), *args], env=env, capture_output=True, text=True,
                             timeout=180)
        assert out.returncode == 0, out.stderr
        return out.stdout
    return rclone


def test_rclone_copy_sync_check(cluster, bucket, tmp_path):
    src, back = tmp_path / "src", tmp_path / "back"
    _tree(src, FILES)
    rclone = _rclone(cluster, tmp_path)
    rclone("copy", str(src), f"pocket:{bucket}/tree")
    rclone("check", str(src), f"pocket:{bucket}/tree")  # size + MD5 of every file
    (src / "a.txt").write_bytes(b"changed")
    os.unlink(src / "dir" / "b.bin")
    rclone("sync", str(src), f"pocket:{bucket}/tree")
    rclone("check", str(src), f"pocket:{bucket}/tree")
    rclone("copy", f"pocket:{bucket}/tree", str(back))
    _same_tree(src, back)


@pytest.mark.parametrize("signature_v2", [False, True])
def test_s3cmd_put_get_ls_del(cluster, bucket, tmp_path, signature_v2):
    """Both signatures s3cmd speaks; with metadata and an ACL, x-amz-* headers it must sign."""
    host = cluster.endpoint.split("://")[1]
    cfg = tmp_path / "s3cfg"
    cfg.write_text(f"[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\nhost_base = {host}\n"
                   f"host_bucket = {host}\nuse_https = False\nsignature_v2 = {signature_v2}\n")
    src = tmp_path / "file.bin"
    data = payload(20 * 1024 * 1024 + 5)  # s3cmd uploads this in 15 MiB multipart chunks
    src.write_bytes(data)

    def s3cmd(*args):
        out = subprocess.run(["s3cmd", "-c", str(cfg), *args], capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout
    cluster.client().put_bucket_ownership_controls(   # ACLs are off in new buckets, as on S3
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    s3cmd("put", str(src), f"s3://{bucket}/s3cmd/file.bin", "--add-header=x-amz-meta-color:blue", "--acl-public")
    assert "s3cmd/file.bin" in s3cmd("ls", "-r", f"s3://{bucket}/")
    head = cluster.client().head_object(Bucket=bucket, Key="s3cmd/file.bin")
    assert head["Metadata"]["color"] == "blue"
    s3cmd("get", f"s3://{bucket}/s3cmd/file.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    s3cmd("del", f"s3://{bucket}/s3cmd/file.bin")
    assert "s3cmd/file.bin" not in s3cmd("ls", "-r", f"s3://{bucket}/")


def test_rclone_lists_and_reads_old_versions(cluster, bucket, tmp_path):
    s3 = cluster.client()
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"first draft")
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"final text!")
    s3.put_object(Bucket=bucket, Key="gone.txt", Body=b"deleted later")
    s3.delete_object(Bucket=bucket, Key="gone.txt")
    rclone = _rclone(cluster, tmp_path)
    assert rclone("lsf", f"pocket:{bucket}").split() == ["doc.txt"]
    listed = sorted(rclone("lsf", "--s3-versions", f"pocket:{bucket}").split())
    assert len(listed) == 3 and "doc.txt" in listed, listed
    old = next(name for name in listed if name.startswith("doc-v"))
    assert rclone("cat", "--s3-versions", f"pocket:{bucket}/{old}") == "first draft"
    gone = next(name for name in listed if name.startswith("gone-v"))
    assert rclone("cat", "--s3-versions", f"pocket:{bucket}/{gone}") == "deleted later"


def test_restic_backup_check_prune_restore(cluster, bucket, tmp_path):
    """A backup repository in a bucket: restic writes packs, indexes and locks, lists them,
    reads them back whole (`check --read-data`) and deletes them when it prunes."""
    src = tmp_path / "src"
    _tree(src, FILES)
    env = {**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "RESTIC_PASSWORD": "correct horse",
           "RESTIC_REPOSITORY": f"s3:{cluster.endpoint}/{bucket}/restic", "RESTIC_CACHE_DIR": str(tmp_path / "cache")}

    def restic(*args):
        out = subprocess.run(["restic", "--quiet", *args], env=env,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout
    restic("init")
    restic("backup", str(src))
    (src / "a.txt").write_bytes(payload(4 * 1024 * 1024))   # changed, a new pack
    os.unlink(src / "dir" / "b.bin")
    restic("backup", str(src))
    before = {o["Key"] for o in cluster.client().list_objects_v2(Bucket=bucket, Prefix="restic/data/")["Contents"]}
    restic("forget", "--keep-last", "1", "--prune")
    after = {o["Key"] for o in cluster.client().list_objects_v2(Bucket=bucket, Prefix="restic/data/")["Contents"]}
    assert after and after != before    # packs only the first snapshot needed are gone
    restic("check", "--read-data")
    assert len(json.loads(restic("snapshots", "--json"))) == 1
    restic("restore", "latest", "--target", str(tmp_path / "out"))
    _same_tree(src, str(tmp_path / "out") + str(src))
