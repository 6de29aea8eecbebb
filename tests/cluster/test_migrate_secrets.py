"""Source keys given on the command line are remembered in a file only its owner reads
(mode 0600, storage/migrate/credentials.py), used by every later command without being
given again, and their secret appears in no output or log: not of `enable`, `copy`,
`verify` or `status` run with -v, not in the gateway's log, the index or the disks.

Real processes: moto as the source, an embedded Pocket, the `pocket` commands run with no
AWS keys in their environment (so the remembered ones are the only ones they can use).
"""
from __future__ import annotations

import os
import random
import stat

from . import forkserver
from .sources import moto_and_pocket

BUCKET = "secretive"


def test_remembered_keys_are_0600_used_later_and_never_printed_or_logged(tmp_path, monkeypatch):
    with moto_and_pocket(str(tmp_path), monkeypatch, embedded=True) as (source, c):
        src, rnd = source.client(), random.Random(81)
        src.create_bucket(Bucket=BUCKET)
        bodies = {f"k/{i}": rnd.randbytes(rnd.randint(1000, 300_000)) for i in range(8)}
        for key, body in bodies.items():
            src.put_object(Bucket=BUCKET, Key=key, Body=body)
        access, secret = "AKIA" + rnd.randbytes(8).hex().upper(), "Zq" + rnd.randbytes(19).hex()
        bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        bare.update(AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)

        def run(*args, ok=0):
            out = forkserver.run(["-v", "migrate", *args, "--config", c.config], env=bare, timeout=300)
            said = out.stdout + out.stderr
            assert out.returncode == ok, said
            assert secret not in said, f"`pocket migrate {args[0]}` printed the secret:\n{said}"
            return said

        run("enable", BUCKET, "--source-endpoint", source.endpoint, "--source-addressing", "path",
            "--source-access-key", access, "--source-secret-key", secret, "--json")
        [kept] = [os.path.join(d, f) for d, _, files in os.walk(c.root) for f in files
                  if f == "migrate-credentials.json"]
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
        with open(kept) as f:
            assert secret in f.read()
        run("copy", BUCKET, "--json")              # no keys given: the remembered ones reach the source
        gw = c.client()
        for key, body in bodies.items():
            assert gw.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key
        run("verify", BUCKET, "--deep", "--json")
        run("status", BUCKET)
        run("status", BUCKET, "--json")

        needle = secret.encode()
        for folder, _, files in os.walk(tmp_path):
            for name in files:
                path = os.path.join(folder, name)
                if path == kept or not os.path.isfile(path):
                    continue
                with open(path, "rb") as f:
                    assert needle not in f.read(), f"the secret is in {path}"
