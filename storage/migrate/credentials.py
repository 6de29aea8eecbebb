"""Source keys an operator passed explicitly, kept beside the index in a file only its owner reads.

Most deployments need none of this: boto3's standard chain (environment, profile, instance
role) is read by every process that talks to the source, the gateway included. When keys are
given on the command line (`--source-access-key`, `--source-secret-key`), the gateway must be
able to use them for dual writes without a restart, so they are stored here: one JSON file,
mode 0600, written to a temp file and renamed.

Keys are filed under the source they open (`entry`: its bucket and endpoint), not under the
Pocket bucket: every reader (the commands, the gateway's routes) knows the source, and a
bucket migrated under another name (`--target`) must find the keys given for its source.
"""
from __future__ import annotations

import json
import os


def keys_path(index_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(index_path)), "migrate-credentials.json")


def entry(source) -> str:
    """Where a source's keys are filed: its label (bucket, and endpoint when not AWS)."""
    return source.label()


def load_keys(path: str | None, source) -> dict | None:
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        kept = json.load(f)
    # (files written before keys were filed by source have them under the bucket's name)
    return kept.get(entry(source)) or kept.get(source.bucket)


def store_keys(path: str, source, access_key: str, secret_key: str, session_token: str | None = None) -> None:
    current = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            current = json.load(f)
    current[entry(source)] = {"access_key": access_key, "secret_key": secret_key,
                       **({"session_token": session_token} if session_token else {})}
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(current, f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
