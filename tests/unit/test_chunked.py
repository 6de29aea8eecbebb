"""The aws-chunked decoder: AWS's documented examples, botocore's real encoder, and every
way a body can be broken. Each broken body must raise before the decoder ends, since
the object service commits only bodies that end cleanly."""
from __future__ import annotations

import asyncio
import base64
import io
import zlib

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from multidict import CIMultiDict

from storage.s3 import errors
from storage.s3.chunked import ChunkedDecoder
from storage.s3.digests import BodyDigests

from .test_sigv4 import CHUNKED, _doc_auth

DOC_DATA = b"a" * 66560
STREAMING_SIGS = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                  "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                  "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
TRAILER_SIGS = ["b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
                "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
                "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"]
TRAILER_SIG = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


def streaming_auth():
    return _doc_auth("PUT", "/examplebucket/chunkObject.txt",
                     dict(CHUNKED, **{"Content-Length": "66824",
                                      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}),
                     "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                     "x-amz-decoded-content-length;x-amz-storage-class",
                     "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")


def trailer_auth():
    return _doc_auth("PUT", "/examplebucket/chunkObject.txt",
                     dict(CHUNKED, **{"x-amz-trailer": "x-amz-checksum-crc32c",
                                      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"}),
                     "content-encoding;host;x-amz-content-sha256;x-amz-date;"
                     "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
                     "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e")


def signed_body(sigs, trailer: bytes = b"\r\n") -> bytes:
    """The AWS example body: chunks of 64 KiB, 1 KiB and the empty one."""
    return (b"10000;chunk-signature=%s\r\n" % sigs[0].encode() + DOC_DATA[:65536] + b"\r\n"
            + b"400;chunk-signature=%s\r\n" % sigs[1].encode() + DOC_DATA[65536:] + b"\r\n"
            + b"0;chunk-signature=%s\r\n" % sigs[2].encode() + trailer)


DOC_TRAILER = b"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:%s\r\n\r\n" % TRAILER_SIG.encode()


async def _pieces(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def decode(body: bytes, piece: int = 8192, **kw) -> tuple[bytes, ChunkedDecoder, list[int]]:
    async def run():
        decoder = ChunkedDecoder(_pieces(body, piece), **kw)
        out, sizes = bytearray(), []
        async for data in decoder:
            out += data
            sizes.append(len(data))
        return bytes(out), decoder, sizes
    return asyncio.run(run())


# --- signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) -------------------------------------

@pytest.mark.parametrize("piece", [1, 7, 100, 65536 + 100, 1 << 20])
def test_aws_doc_signed_streaming_any_split(piece):
    data, decoder, _ = decode(signed_body(STREAMING_SIGS), piece, auth=streaming_auth())
    assert data == DOC_DATA
    assert decoder.previous_signature == STREAMING_SIGS[-1]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_bad_chunk_signature_is_refused(which):
    sigs = list(STREAMING_SIGS)
    sigs[which] = sigs[which][:-1] + ("0" if sigs[which][-1] != "0" else "1")
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(signed_body(sigs), auth=streaming_auth())


def test_tampered_data_is_refused():
    body = bytearray(signed_body(STREAMING_SIGS))
    body[body.index(b"aaaa") + 10] = ord("b")
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(bytes(body), auth=streaming_auth())


def test_chunks_cannot_be_reordered_or_dropped():
    # Dropping the 64 KiB chunk breaks the chain even though each chunk is signed.
    body = signed_body(STREAMING_SIGS)
    tail = body[body.index(b"400;"):]
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(tail, auth=streaming_auth())


def test_missing_chunk_signature_in_signed_mode():
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(b"3\r\nabc\r\n0\r\n\r\n", auth=streaming_auth())


def test_trailer_in_non_trailer_mode_is_refused():
    with pytest.raises(errors.InvalidRequest):
        decode(signed_body(STREAMING_SIGS, b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"), auth=streaming_auth())


# --- signed trailer (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER) -----------------------------

def test_aws_doc_signed_trailer():
    seen = []
    data, decoder, _ = decode(signed_body(TRAILER_SIGS, DOC_TRAILER), 1000, auth=trailer_auth(),
                              trailers=True, on_trailer=lambda n, v: seen.append((n, v)))
    assert data == DOC_DATA
    assert seen == decoder.trailers == [("x-amz-checksum-crc32c", "sOO8/Q==")]


@pytest.mark.parametrize("trailer", [
    DOC_TRAILER.replace(b"sOO8", b"sOO9"),                        # value changed: signature no longer fits
    DOC_TRAILER.replace(TRAILER_SIG.encode(), b"0" * 64),          # wrong signature
    b"x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n",                     # signature missing
])
def test_bad_trailer_signature_is_refused(trailer):
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(signed_body(TRAILER_SIGS, trailer), auth=trailer_auth(), trailers=True)


def test_signed_trailer_checksum_reaches_body_digests():
    headers = CIMultiDict({"x-amz-trailer": "x-amz-checksum-crc32c"})
    digests = BodyDigests(headers, len(DOC_DATA), None, trailer=headers["x-amz-trailer"])
    data, _, _ = decode(signed_body(TRAILER_SIGS, DOC_TRAILER), auth=trailer_auth(), trailers=True,
                        on_trailer=digests.receive_trailer)
    digests.update(data)
    assert digests.finish(len(data))["checksums"] == {"crc32c": "sOO8/Q=="}


# --- unsigned trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER), as botocore encodes it ----------

def botocore_body(data: bytes, chunk_size: int = 65536) -> bytes:
    return AwsChunkedWrapper(io.BytesIO(data), Crc32Checksum, "x-amz-checksum-crc32", chunk_size).read()


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 200_001])
def test_botocore_unsigned_trailer(size):
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    digests = BodyDigests({}, size, None, trailer="x-amz-checksum-crc32")
    data, decoder, _ = decode(botocore_body(payload), 3000, trailers=True, on_trailer=digests.receive_trailer)
    assert data == payload
    digests.update(data)
    assert digests.finish(size)["checksums"] == {"crc32": _crc32(payload)}


def test_unsigned_trailer_wrong_checksum_is_bad_digest():
    body = botocore_body(b"hello world").replace(_crc32(b"hello world").encode(), _crc32(b"other").encode())
    digests = BodyDigests({}, 11, None, trailer="x-amz-checksum-crc32")
    data, _, _ = decode(body, trailers=True, on_trailer=digests.receive_trailer)
    digests.update(data)
    with pytest.raises(errors.BadDigest):
        digests.finish(len(data))


def test_declared_trailer_that_never_comes():
    digests = BodyDigests({}, 5, None, trailer="x-amz-checksum-crc32")
    data, _, _ = decode(b"5\r\nhello\r\n0\r\n\r\n", trailers=True, on_trailer=digests.receive_trailer)
    digests.update(data)
    with pytest.raises(errors.MalformedTrailerError):
        digests.finish(5)


def test_undeclared_or_repeated_trailer():
    digests = BodyDigests({}, 5, None, trailer="x-amz-checksum-crc32")
    with pytest.raises(errors.MalformedTrailerError):
        decode(b"5\r\nhello\r\n0\r\nx-amz-checksum-sha256:" + b"A" * 43 + b"=\r\n\r\n", trailers=True,
               on_trailer=digests.receive_trailer)
    twice = b"5\r\nhello\r\n0\r\n" + b"x-amz-checksum-crc32:%s\r\n" % _crc32(b"hello").encode() * 2 + b"\r\n"
    with pytest.raises(errors.MalformedTrailerError):
        decode(twice, trailers=True, on_trailer=BodyDigests({}, 5, None, trailer="x-amz-checksum-crc32")
               .receive_trailer)


def test_trailer_declarations_are_checked_up_front():
    with pytest.raises(errors.InvalidRequest):
        BodyDigests({}, 5, None, trailer="x-amz-meta-foo")
    with pytest.raises(errors.InvalidRequest):
        BodyDigests({"x-amz-checksum-crc32": _crc32(b"hello")}, 5, None, trailer="x-amz-checksum-crc32")
    with pytest.raises(errors.InvalidRequest):
        BodyDigests({"x-amz-checksum-sha1": "A" * 27 + "="}, 5, None, trailer="x-amz-checksum-crc32")


def test_trailer_lines_may_end_in_bare_lf_and_body_may_end_after_them():
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:%s\n" % _crc32(b"hello").encode()
    data, decoder, _ = decode(body, trailers=True)
    assert data == b"hello" and decoder.trailers == [("x-amz-checksum-crc32", _crc32(b"hello"))]


# --- broken framing ------------------------------------------------------------------------

@pytest.mark.parametrize("body, error", [
    (b"", errors.IncompleteBody),                                   # nothing at all
    (b"5\r\nhel", errors.IncompleteBody),                           # cut inside a chunk
    (b"5\r\nhello\r\n", errors.IncompleteBody),                     # no final chunk
    (b"5\r\nhello\r\n0", errors.IncompleteBody),                    # cut inside the final header
    (b"zz\r\nhello\r\n0\r\n\r\n", errors.InvalidRequest),           # size is not hex
    (b"5\r\nhelloXX0\r\n\r\n", errors.InvalidRequest),              # data not followed by CRLF
    (b"3\r\nhello\r\n0\r\n\r\n", errors.InvalidRequest),            # chunk longer than its size
    (b"5\r\nhello\r\n0\r\n\r\nmore", errors.InvalidRequest),        # data after the end
    (b"5\r\nhello\r\n0\r\nno-colon-here\r\n\r\n", errors.MalformedTrailerError),
    (b"1" * 10000 + b"\r\n", errors.InvalidRequest),                # endless header line
])
def test_broken_bodies(body, error):
    with pytest.raises(error):
        decode(body, 3, trailers=True)


def test_memory_is_bounded_by_the_network_reads_not_the_chunk_size():
    big = b"q" * (8 << 20)
    body = b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n"
    data, _, sizes = decode(body, 65536)
    assert data == big
    assert max(sizes) <= 65536
