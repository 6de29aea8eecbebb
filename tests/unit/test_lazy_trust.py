"""aiohttp imported by one-shot commands (storage/lazy_trust.py): its default TLS contexts
load no trust store at import, and the full system store at their first handshake, so an
https request made with them still verifies as it would have."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.cluster.harness import REPO

_PROBE = """
import json, ssl
from storage.lazy_trust import import_aiohttp
import_aiohttp()
from aiohttp import connector
verified = connector._SSL_CONTEXT_VERIFIED
before = verified.cert_store_stats()["x509_ca"]
verified.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.com")
print(json.dumps({"before": before, "after": verified.cert_store_stats()["x509_ca"],
                  "system": ssl.create_default_context().cert_store_stats()["x509_ca"],
                  "hostname": verified.check_hostname, "required": verified.verify_mode == ssl.CERT_REQUIRED,
                  "restored": "set_default_verify_paths" not in ssl.SSLContext.__dict__}))
"""


def test_default_contexts_load_the_system_store_at_first_handshake():
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    assert seen["before"] == 0, "the trust store was loaded at import"
    assert seen["after"] == seen["system"] > 0, "the first handshake verifies against the whole system store"
    assert seen["hostname"] and seen["required"]
    assert seen["restored"], "contexts made after the import load their store as usual"
