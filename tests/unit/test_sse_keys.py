"""The crypto of server-side encryption, without processes: segments sealed per index and
version, tampering and swapping detected, data keys wrapped and never the SSE-C key stored."""
from __future__ import annotations

import base64
import json
import random

import pytest

from storage import layout
from storage.crypto.keys import SSE_C, SSE_KMS, SSE_S3, KeyUnavailable, Keyring, Sealing
from storage.crypto.segments import TAG_BYTES, SegmentCipher, Tampered

VID, OTHER_VID = "11" * 16, "22" * 16
MASTER = random.Random(1).randbytes(32)
APP = random.Random(2).randbytes(32)
SECRET = "unit-test-cluster-secret-0123456789abcdef"


def _ring(master=MASTER) -> Keyring:
    return Keyring(master, {"app": APP}, SECRET)


def test_segments_open_only_in_their_place_and_version():
    cipher = SegmentCipher(random.Random(3).randbytes(32), VID)
    plain = [random.Random(10 + j).randbytes(1000) for j in range(3)]
    sealed = [cipher.seal(j, p) for j, p in enumerate(plain)]
    assert all(len(s) == len(p) + TAG_BYTES for s, p in zip(sealed, plain))
    assert [cipher.open(j, s) for j, s in enumerate(sealed)] == plain
    with pytest.raises(Tampered):
        cipher.open(1, sealed[0])                     # a segment moved to another index
    with pytest.raises(Tampered):
        SegmentCipher(cipher._key, OTHER_VID).open(0, sealed[0])   # or to another version
    flipped = bytearray(sealed[2])
    flipped[5] ^= 1
    with pytest.raises(Tampered):
        cipher.open(2, bytes(flipped))
    assert len({cipher._nonce(j) for j in range(1000)}) == 1000


@pytest.mark.parametrize("sealing", [Sealing(SSE_S3), Sealing(SSE_KMS, kms_key_id="app", context='{"a":"b"}'),
                                     Sealing(SSE_KMS)])
def test_wrapped_data_keys_open_with_their_key_only(sealing):
    ring = _ring()
    cipher, sse = ring.seal(sealing, VID)
    sealed = cipher.seal(0, b"hello world")
    assert ring.opener(sse, VID, None).open(0, sealed) == b"hello world"
    with pytest.raises(KeyUnavailable):       # another master key (or a wrapped key moved to another context)
        Keyring(random.Random(9).randbytes(32), {"app": random.Random(8).randbytes(32)}, SECRET).opener(sse, VID, None)
    if sealing.mode == SSE_KMS:
        with pytest.raises(KeyUnavailable):
            ring.opener({**sse, "context": '{"a":"c"}'}, VID, None)


def test_customer_key_is_never_stored_and_a_wrong_one_is_refused():
    ring = _ring(master=None)      # SSE-C needs no master key
    key, wrong = random.Random(4).randbytes(32), random.Random(5).randbytes(32)
    cipher, sse = ring.seal(Sealing(SSE_C, customer_key=key), VID)
    text = json.dumps(sse)
    assert base64.b64encode(key).decode() not in text and key.hex() not in text
    assert ring.customer_key_matches(sse, key) and not ring.customer_key_matches(sse, wrong)
    sealed = cipher.seal(0, b"x" * 100)
    assert ring.opener(sse, VID, key).open(0, sealed) == b"x" * 100
    with pytest.raises(KeyUnavailable):
        ring.opener(sse, VID, wrong)
    _, again = ring.seal(Sealing(SSE_C, customer_key=key), VID)
    assert again["salt"] != sse["salt"]        # the same key never gives the same data key twice


def test_kms_key_names_and_missing_keys():
    ring = _ring(master=None)
    assert ring.kms_key_name("app") == ring.kms_key_name("alias/app") == "app"
    assert ring.kms_key_name("arn:aws:kms:us-east-1:123456789012:key/app") == "app"
    with pytest.raises(KeyUnavailable):
        ring.kms_key_name("other")
    with pytest.raises(KeyUnavailable):   # SSE-S3 without a master key configured
        ring.kms_key_name("")


def test_stored_sizes_grow_by_one_tag_per_segment():
    plain = {"size": 10_000, "segment_size": 4096}
    sealed = {**plain, "sse": {"mode": SSE_S3}}
    assert layout.stored_size(plain) == 10_000 and layout.stored_size(sealed) == 10_000 + 3 * TAG_BYTES
    assert layout.geometry(sealed, 4).segment_size == 4096 + TAG_BYTES
    assert layout.stored_size({"size": 0, "segment_size": 4096, "sse": {"mode": SSE_C}}) == 0
