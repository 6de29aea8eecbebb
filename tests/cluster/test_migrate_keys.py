"""Source keys given on the command line (`--source-access-key`/`--source-secret-key`), not
through the AWS chain: kept in a 0600 file, never printed, and found by every process that
talks to the source (the gateway's dual writes without a restart, later commands that do
not repeat them), also for a bucket migrated under another name (`--target`).

The source is a second Pocket, which checks every signature (moto accepts any keys), and
no process of the test has keys in its environment or an AWS config to fall back on."""
from __future__ import annotations

import glob
import os
import stat

import pytest

from .harness import ProcCluster, pocket
from .sources import start_pocket_source


@pytest.fixture
def keyless(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")      # no instance role to find either
    monkeypatch.setenv("POCKET_MIGRATE_RETRY_CAP", "1")
    with start_pocket_source(str(tmp_path / "source")) as source:
        c = ProcCluster(str(tmp_path / "pocket"), embedded=True).start()
        try:
            yield source, c
        finally:
            c.close()


def test_keys_given_once_reach_the_gateway_and_later_commands_under_another_name(keyless):
    source, c = keyless
    src = source.client()
    src.create_bucket(Bucket="src-photos")
    before = os.urandom(1000) + b"before enable"
    src.put_object(Bucket="src-photos", Key="old.bin", Body=before)
    _, out = pocket(c, "migrate", "enable", "src-photos", "--target", "photos", "--source-endpoint", source.endpoint,
                    "--source-addressing", "path", "--source-access-key", source.access_key,
                    "--source-secret-key", source.secret_key, "--json")
    assert out["buckets"][0]["ok"], out
    [kept] = glob.glob(os.path.join(c.root, "**", "migrate-credentials.json"), recursive=True)
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    assert source.secret_key not in str(out)

    gw = c.client()
    during = os.urandom(2000) + b"written through the gateway in dual-write"
    gw.put_object(Bucket="photos", Key="new.bin", Body=during)      # the source leads: it needs the keys
    assert src.get_object(Bucket="src-photos", Key="new.bin")["Body"].read() == during

    code, said = pocket(c, "-v", "migrate", "copy", "src-photos", "--target", "photos", "--source-endpoint",
                        source.endpoint)       # no keys on this command line: the kept ones
    assert code == 0 and source.secret_key not in said
    _, report = pocket(c, "migrate", "verify", "src-photos", "--target", "photos", "--deep", "--source-endpoint",
                       source.endpoint, "--json")
    assert report["clean"] and report["buckets"][0]["deep_read"] == 2, report
    got = {k: gw.get_object(Bucket="photos", Key=k)["Body"].read() for k in ("old.bin", "new.bin")}
    assert got == {"old.bin": before, "new.bin": during}
    logs = glob.glob(os.path.join(c.root, "*.log"))
    assert logs and not [p for p in logs if source.secret_key in open(p, errors="replace").read()]
