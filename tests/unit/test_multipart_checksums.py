"""How a multipart object's checksum is made from its parts (AWS's COMPOSITE and FULL_OBJECT)."""
import base64
import hashlib
import zlib

import pytest
from awscrt import checksums as crt
from multidict import CIMultiDict

from storage.s3 import errors
from storage.s3 import multipart_checksums as MC
from storage.s3.digests import BodyDigests, new_checksum

CHUNKS = [b"a" * 5000, bytes(range(256)) * 7, b"tail"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def parts(algorithm: str) -> list[dict]:
    out = []
    for n, chunk in enumerate(CHUNKS, 1):
        h = new_checksum(algorithm)
        h.update(chunk)
        out.append({"part_number": n, "size": len(chunk), "checksums": {algorithm: b64(h.digest())}})
    return out


@pytest.mark.parametrize("algorithm, whole", [
    ("crc32", lambda d: zlib.crc32(d).to_bytes(4, "big")),
    ("crc32c", lambda d: crt.crc32c(d).to_bytes(4, "big")),
    ("crc64nvme", lambda d: crt.crc64nvme(d).to_bytes(8, "big")),
])
def test_full_object_checksum_is_the_crc_of_the_whole_object(algorithm, whole):
    got = MC.of_object({"algorithm": algorithm, "type": "FULL_OBJECT"}, parts(algorithm), CIMultiDict())
    assert got == {"checksums": {algorithm: b64(whole(b"".join(CHUNKS)))}, "checksum_type": "FULL_OBJECT"}


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "crc32c"])
def test_composite_checksum_is_a_checksum_of_the_part_checksums(algorithm):
    ps = parts(algorithm)
    raw = b"".join(base64.b64decode(p["checksums"][algorithm]) for p in ps)
    h = new_checksum(algorithm)
    h.update(raw)
    got = MC.of_object({"algorithm": algorithm, "type": "COMPOSITE"}, ps, CIMultiDict())
    assert got["checksums"][algorithm] == f"{b64(h.digest())}-3" and got["checksum_type"] == "COMPOSITE"
    if algorithm == "sha256":   # spelled out once, independently of new_checksum
        assert got["checksums"]["sha256"] == b64(hashlib.sha256(raw).digest()) + "-3"


def test_full_object_value_sent_on_complete_is_checked():
    ps = parts("crc32")
    good = b64(zlib.crc32(b"".join(CHUNKS)).to_bytes(4, "big"))
    declared = {"algorithm": "crc32", "type": "FULL_OBJECT"}
    assert MC.of_object(declared, ps, CIMultiDict({"x-amz-checksum-crc32": good}))["checksums"]["crc32"] == good
    with pytest.raises(errors.BadDigest):
        MC.of_object(declared, ps, CIMultiDict({"x-amz-checksum-crc32": b64(b"\0\0\0\0")}))


@pytest.mark.parametrize("headers, expected", [
    ({}, None),
    ({"x-amz-checksum-algorithm": "CRC32"}, {"algorithm": "crc32", "type": "COMPOSITE"}),
    ({"x-amz-checksum-algorithm": "sha256"}, {"algorithm": "sha256", "type": "COMPOSITE"}),
    ({"x-amz-checksum-algorithm": "CRC64NVME"}, {"algorithm": "crc64nvme", "type": "FULL_OBJECT"}),
    ({"x-amz-checksum-algorithm": "CRC32C", "x-amz-checksum-type": "FULL_OBJECT"},
     {"algorithm": "crc32c", "type": "FULL_OBJECT"}),
])
def test_declared_defaults_as_aws(headers, expected):
    assert MC.declared(CIMultiDict(headers)) == expected


@pytest.mark.parametrize("headers", [
    {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-type": "FULL_OBJECT"},
    {"x-amz-checksum-algorithm": "SHA1", "x-amz-checksum-type": "FULL_OBJECT"},
    {"x-amz-checksum-algorithm": "CRC64NVME", "x-amz-checksum-type": "COMPOSITE"},
    {"x-amz-checksum-algorithm": "MD5"},
    {"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "PARTIAL"},
    {"x-amz-checksum-type": "COMPOSITE"},
])
def test_invalid_combinations_are_invalid_requests(headers):
    with pytest.raises(errors.InvalidRequest):
        MC.declared(CIMultiDict(headers))


def test_parts_must_carry_the_declared_algorithm_but_full_object_parts_may_carry_none():
    composite, full = {"algorithm": "crc32", "type": "COMPOSITE"}, {"algorithm": "crc32", "type": "FULL_OBJECT"}
    MC.check_part(None, BodyDigests(CIMultiDict({"x-amz-checksum-crc32": "AAAAAA=="}), None, None))
    MC.check_part(composite, BodyDigests(CIMultiDict({"x-amz-checksum-crc32": "AAAAAA=="}), None, None))
    for declared, headers in ((composite, {}), (composite, {"x-amz-checksum-sha256": b64(bytes(32))}),
                              (full, {"x-amz-checksum-sha256": b64(bytes(32))})):
        with pytest.raises(errors.InvalidRequest, match="Checksum Type mismatch"):
            MC.check_part(declared, BodyDigests(CIMultiDict(headers), None, None))
    digests = BodyDigests(CIMultiDict(), None, None)
    MC.check_part(full, digests)   # none sent: computed here
    digests.update(b"abc")
    assert digests.finish(3)["checksums"] == {"crc32": b64(zlib.crc32(b"abc").to_bytes(4, "big"))}
