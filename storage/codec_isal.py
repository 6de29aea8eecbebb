"""ISA-L's SIMD Reed-Solomon kernel, computing exactly the blocks zfec computes.

Why: zfec's table-driven GF(2^8) arithmetic ran at ~800 MiB/s per core here, a sixth of
a 4+2 PUT's CPU and a third of a repair's. ISA-L (Intel's storage library, what Swift
runs as `isa_l_rs_vand`) does the same arithmetic with AVX2/AVX-512/GFNI at several GiB/s,
and ctypes releases the GIL for the call, so two segments encode on two cores.

Why the same blocks as zfec, not ISA-L's own matrices: a parity block is a linear
combination of the data blocks over GF(2^8), and both libraries use the field of the
polynomial 0x11D. Read zfec's coefficients once per (k, m) by encoding unit vectors,
hand them to ISA-L, and every archive ever written stays readable and repairable by
either library: no format change, no codec field, and zfec remains the fallback where
ISA-L cannot be loaded (tests compare the two byte for byte).

Where the library comes from: PyPI's `pyeclib` wheel (OpenStack's erasure-code binding)
ships `libisal` in `pyeclib.libs/`; a system `libisal.so.2` (Debian's libisal2) is used
otherwise. Nothing of pyeclib's own API is used: its fragments carry headers of their
own, while Pocket's blocks are plain slices of the segment.
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os
import sysconfig
from functools import lru_cache
from typing import Iterator

import zfec

log = logging.getLogger("pocket.codec")


def _candidates() -> Iterator[str]:
    """pyeclib's copy first; the system's only when none of those loads: find_library runs
    `ldconfig -p` in a subprocess, ~10 ms of CPU at every command's start."""
    found = []
    for key in ("platlib", "purelib"):
        found += sorted(glob.glob(os.path.join(sysconfig.get_paths()[key], "pyeclib.libs", "libisal*.so*")))
    yield from dict.fromkeys(found)
    import ctypes.util
    system = ctypes.util.find_library("isal")
    if system:
        yield system


def _load():
    if os.environ.get("POCKET_ERASURE_KERNEL", "") == "zfec":
        return None
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.ec_init_tables.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]
            lib.ec_init_tables.restype = None
            lib.ec_encode_data.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                           ctypes.c_void_p, ctypes.c_void_p]
            lib.ec_encode_data.restype = None
            lib.gf_invert_matrix.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
            lib.gf_invert_matrix.restype = ctypes.c_int
            return lib
        except (OSError, AttributeError) as exc:
            log.info("cannot use %s for erasure coding (%s); trying the next", path, exc)
    log.info("ISA-L not found (install pyeclib, or Debian's libisal2): erasure coding uses zfec, "
             "which is several times slower")
    return None


_lib = _load()


def available() -> bool:
    return _lib is not None


@lru_cache(maxsize=None)
def zfec_matrix(k: int, n: int) -> tuple[bytes, ...]:
    """Rows k..n-1 of zfec's systematic encoding matrix, read off its own encoder: encoding
    the unit vector e_j gives column j of every parity row."""
    encoder = zfec.Encoder(k, n)
    rows = [bytearray(k) for _ in range(n - k)]
    for j in range(k):
        unit = tuple(b"\x01" if i == j else b"\x00" for i in range(k))
        for r, block in enumerate(encoder.encode(unit, tuple(range(k, n)))):
            rows[r][j] = block[0]
    return tuple(bytes(r) for r in rows)


def _full_row(k: int, n: int, num: int) -> bytes:
    """Row `num` of the n x k encoding matrix: the identity above the parity rows."""
    if num < k:
        return bytes(1 if j == num else 0 for j in range(k))
    return zfec_matrix(k, n)[num - k]


@lru_cache(maxsize=256)
def _tables(k: int, rows: bytes) -> bytes:
    """ISA-L's expanded multiplication tables for a (len(rows) / k) x k coefficient matrix."""
    count = len(rows) // k
    out = ctypes.create_string_buffer(32 * k * count)
    _lib.ec_init_tables(k, count, rows, out)
    return out.raw


@lru_cache(maxsize=256)
def decode_rows(k: int, n: int, have: tuple[int, ...], wanted: tuple[int, ...]) -> bytes:
    """Coefficients that compute the blocks `wanted` from the k blocks `have`: the inverse
    of `have`'s rows of the encoding matrix gives the data blocks, and a wanted parity row
    times that inverse gives a parity block straight from what is at hand."""
    square = b"".join(_full_row(k, n, i) for i in have)
    inverse = ctypes.create_string_buffer(k * k)
    if _lib.gf_invert_matrix(square, inverse, k) != 0:
        raise ValueError(f"blocks {have} of a {k}+{n - k} code are not independent")
    inv = inverse.raw
    out = bytearray()
    for w in wanted:
        row = _full_row(k, n, w)
        for col in range(k):
            acc = 0
            for j in range(k):
                if row[j]:
                    acc ^= _gf_mul(row[j], inv[j * k + col])
            out.append(acc)
    return bytes(out)


def _gf_mul(a: int, b: int) -> int:
    """GF(2^8) multiplication modulo 0x11D (only for building small matrices)."""
    p = 0
    while b:
        if b & 1:
            p ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11D
        b >>= 1
    return p


class _Buffer(ctypes.Structure):
    """CPython's Py_buffer, to ask any buffer (a read-only view too) for its address."""
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_Buffer), ctypes.c_int]
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_Buffer)]


def pin(buf) -> tuple[object, int]:
    """A buffer's address for C, and the object that keeps it alive, read in place.

    A read-only view (the checked payloads of a read, views into what the disk returned)
    is asked for its address too: copying it first was a second copy of every byte a
    repair reads, under the GIL (py-spy --gil of `pocket repair`: 7 % of its samples, and
    the page faults of the fresh copies ~10 % of its CPU in perf). The address stays
    valid while `buf` lives: a view holds its exporter, and bytes never move."""
    if type(buf) is bytes:
        return buf, ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value
    if not len(buf):
        return buf, 0
    view = _Buffer()
    try:
        _get_buffer(buf, ctypes.byref(view), 0)   # PyBUF_SIMPLE: contiguous bytes, or BufferError
    except BufferError:
        return pin(bytes(buf))
    try:
        return buf, view.buf
    finally:
        _release_buffer(ctypes.byref(view))


def combine(k: int, rows: bytes, addresses: list[int], size: int) -> list[memoryview]:
    """len(rows) / k blocks of `size` bytes, each the GF(2^8) combination of the k source
    blocks at `addresses` (the caller keeps them alive) by one row of coefficients."""
    count = len(rows) // k
    inputs = (ctypes.c_void_p * k)(*addresses)
    out = bytearray(size * count)
    if size:
        base = ctypes.addressof(ctypes.c_char.from_buffer(out))
        outputs = (ctypes.c_void_p * count)(*(base + i * size for i in range(count)))
        _lib.ec_encode_data(size, k, count, _tables(k, rows), inputs, outputs)
    view = memoryview(out)
    return [view[i * size:(i + 1) * size] for i in range(count)]


@lru_cache(maxsize=64)
def parity_rows(k: int, n: int, nums: tuple[int, ...]) -> bytes:
    return b"".join(zfec_matrix(k, n)[i - k] for i in nums)
