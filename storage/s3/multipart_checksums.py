"""Checksums of multipart uploads: per part, and of the object Complete makes from them.

CreateMultipartUpload may declare an algorithm (x-amz-checksum-algorithm) and how the
object's checksum is made from the parts (x-amz-checksum-type):

- COMPOSITE: base64(H(raw part checksum 1 || ... || raw part checksum N)) + "-N", a
  checksum of checksums (the multipart ETag's idea). CRC32, CRC32C, SHA1, SHA256.
- FULL_OBJECT: the CRC of the whole object, as a single PUT would have it. Made by
  combining the part CRCs with the parts' lengths (zlib's crc32_combine), so Complete
  reads no data. CRC32, CRC32C, CRC64NVME (which allows nothing else).

Every part of a COMPOSITE upload must carry that algorithm's checksum (verified as the
body streams in, like PutObject's); a FULL_OBJECT upload's part without one gets it
computed here. Complete checks the checksums its <Part> elements list
against the stored ones. The upload's declaration travels in every part's manifest,
and the object's checksum is in its on-disk record, so an index rebuild keeps both.
"""
from __future__ import annotations

import base64

from . import errors
from .digests import CHECKSUM_ALGORITHMS, new_checksum

COMPOSITE, FULL_OBJECT = "COMPOSITE", "FULL_OBJECT"
_TYPES = {"crc32": (COMPOSITE, FULL_OBJECT), "crc32c": (COMPOSITE, FULL_OBJECT), "crc64nvme": (FULL_OBJECT,),
          "sha1": (COMPOSITE,), "sha256": (COMPOSITE,)}


def _combiner(algorithm: str):
    """(combine function, width in bytes) of a CRC; awscrt is loaded at the first use (see
    digests.new_checksum)."""
    from awscrt import checksums as crt
    return {"crc32": (crt.combine_crc32, 4), "crc32c": (crt.combine_crc32c, 4),
            "crc64nvme": (crt.combine_crc64nvme, 8)}[algorithm]


def declared(headers) -> dict | None:
    """The upload's {"algorithm", "type"} from CreateMultipartUpload's headers, or None."""
    algorithm = headers.get("x-amz-checksum-algorithm", "").strip().lower()
    kind = headers.get("x-amz-checksum-type", "").strip().upper()
    if not algorithm:
        if kind:
            raise errors.InvalidRequest("x-amz-checksum-type needs x-amz-checksum-algorithm as well.")
        return None
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise errors.InvalidRequest(f"Checksum algorithm {algorithm!r} is not supported; use one of "
                                    f"{', '.join(a.upper() for a in CHECKSUM_ALGORITHMS)}.")
    allowed = _TYPES[algorithm]
    kind = kind or allowed[0]
    if kind not in (COMPOSITE, FULL_OBJECT):
        raise errors.InvalidRequest(f"x-amz-checksum-type must be COMPOSITE or FULL_OBJECT, not {kind!r}.")
    if kind not in allowed:
        raise errors.InvalidRequest(f"The {kind} checksum type cannot be used with the {algorithm.upper()} "
                                    f"checksum algorithm; it allows {' or '.join(allowed)}.")
    return {"algorithm": algorithm, "type": kind}


def headers(checksum: dict | None) -> dict[str, str]:
    """What CreateMultipartUpload echoes."""
    if not checksum:
        return {}
    return {"x-amz-checksum-algorithm": checksum["algorithm"].upper(), "x-amz-checksum-type": checksum["type"]}


def xml_fields(checksums: dict | None) -> list[tuple[str, str]]:
    """Checksum<ALG> elements (ListParts, Complete, CopyPartResult, GetObjectAttributes)."""
    return [(f"Checksum{a.upper()}", v) for a, v in (checksums or {}).items()]


def check_part(checksum: dict | None, digests) -> None:
    """An UploadPart must carry the checksum its upload declared, and no other (as AWS:
    InvalidRequest "Checksum Type mismatch"). A FULL_OBJECT upload's part may carry none:
    its CRC is then computed here, since Complete combines every part's."""
    if not checksum:
        return
    algorithm, sent = checksum["algorithm"], digests.declared()
    if sent == {algorithm}:
        return
    if not sent and checksum["type"] == FULL_OBJECT:
        digests.compute(algorithm)
        return
    got = ", ".join(sorted(a.upper() for a in sent)) or "null"
    raise errors.InvalidRequest(f"Checksum Type mismatch occurred, expected checksum Type: {algorithm.upper()}, "
                                f"actual checksum Type: {got}")


def from_part_element(el) -> dict[str, str]:
    """The Checksum<ALG> values of one <Part> of a CompleteMultipartUpload body."""
    found = {}
    for algorithm in CHECKSUM_ALGORITHMS:
        value = el.findtext(f"Checksum{algorithm.upper()}")
        if value is not None:
            found[algorithm] = value.strip()
    return found


def check_complete(checksum: dict | None, listed: dict[int, dict[str, str]], http_headers) -> None:
    """Complete's own promises, before any part is looked at: a composite upload lists
    every part's checksum; a checksum type given on Complete is the upload's."""
    kind = http_headers.get("x-amz-checksum-type", "").strip().upper()
    if kind and (not checksum or kind != checksum["type"]):
        raise errors.InvalidRequest(f"The upload was created with checksum type "
                                    f"{checksum['type'] if checksum else 'none'}, not {kind}.")
    if not checksum or checksum["type"] != COMPOSITE:
        return
    for number, values in listed.items():
        if checksum["algorithm"] not in values:
            raise errors.InvalidRequest(
                f"The upload was created using a {checksum['algorithm']} checksum. The complete request must "
                f"include the checksum for each part. It was missing for part {number} in the request.")


def of_object(checksum: dict | None, parts: list[dict], http_headers) -> dict:
    """The object record's checksum fields, from its chosen parts (in order).

    An x-amz-checksum-<alg> header on Complete is the client's full-object value for a
    FULL_OBJECT upload, or the composite one: it must equal what the parts make."""
    if not checksum:
        return {}
    algorithm, kind = checksum["algorithm"], checksum["type"]
    raw = []
    for part in parts:
        value = (part.get("checksums") or {}).get(algorithm)
        if value is None:  # a part stored before its upload declared checksums cannot exist; be loud
            raise errors.InvalidPart(f"Part {part['part_number']} has no {algorithm} checksum.")
        raw.append(base64.b64decode(value))
    if kind == FULL_OBJECT:
        combine, width = _combiner(algorithm)
        crc = int.from_bytes(raw[0], "big")
        for part, value in zip(parts[1:], raw[1:]):
            crc = combine(crc, int.from_bytes(value, "big"), part["size"])
        value = base64.b64encode(crc.to_bytes(width, "big")).decode()
    else:
        h = new_checksum(algorithm)
        h.update(b"".join(raw))
        value = f"{base64.b64encode(h.digest()).decode()}-{len(parts)}"
    sent = http_headers.get(f"x-amz-checksum-{algorithm}")
    if sent is not None and sent.strip() != value:
        raise errors.BadDigest(f"The {algorithm.upper()} you specified for the object did not match the one "
                               f"calculated from its parts ({value}).")
    return {"checksums": {algorithm: value}, "checksum_type": kind}


def type_of(record: dict) -> str:
    """A stored object's checksum type: a single PUT's checksum covers the whole object."""
    return record.get("checksum_type", FULL_OBJECT)
