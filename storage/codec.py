"""The erasure coder behind a two-function interface (Tahoe-LAFS's codec.py model).

The rest of Pocket never touches zfec: it asks for the `n` blocks of a segment and gets
a segment back from any `k` of them. Replication is the degenerate code `k = 1`, so
small objects stored as `m + 1` copies use the same archive format and read path.
"""
from __future__ import annotations

import zfec

from storage import codec_isal


class Codec:
    """`kernel`: "isal" or "zfec" (tests compare them); by default ISA-L where it loads
    (codec_isal.py: the same blocks, several times faster), zfec otherwise."""

    def __init__(self, k: int, m: int, kernel: str | None = None):
        if k < 1 or m < 0 or k + m > 256:
            raise ValueError(f"invalid erasure code {k}+{m}: need k >= 1, m >= 0, k + m <= 256")
        self.k, self.m, self.n = k, m, k + m
        self._parity_nums = tuple(range(k, k + m))
        coded = k > 1 and m > 0
        if kernel == "isal" and not codec_isal.available():
            raise RuntimeError("ISA-L is not available (pip install pyeclib, or Debian's libisal2)")
        self._isal = coded and codec_isal.available() and kernel != "zfec"
        self._encoder = zfec.Encoder(k, self.n) if coded and not self._isal else None
        self._decoder = zfec.Decoder(k, self.n) if coded and not self._isal else None

    def block_size(self, length: int) -> int:
        """Bytes per fragment block for a segment of `length` bytes (blocks are padded)."""
        return -(-length // self.k)

    def encode(self, segment: bytes) -> list[bytes]:
        """Split `segment` into `k` data blocks and add `m` parity blocks.

        Data blocks are plain slices of the segment, so a reader holding all of them
        never needs to decode. They are views into it, not copies (only a segment that
        needs padding is copied once): the records the writer makes of them copy them
        anyway."""
        if self.k == 1:
            return [bytes(segment)] * self.n
        size = self.block_size(len(segment))
        pad = size * self.k - len(segment)
        source = bytes(segment) + b"\0" * pad if pad else segment
        padded = memoryview(source)
        data = tuple(padded[i * size:(i + 1) * size] for i in range(self.k))
        if not self.m:
            return list(data)
        if self._isal:
            _pinned, base = codec_isal.pin(source)
            rows = codec_isal.parity_rows(self.k, self.n, self._parity_nums)
            return list(data) + codec_isal.combine(self.k, rows, [base + i * size for i in range(self.k)], size)
        return list(data) + self._encoder.encode(data, self._parity_nums)

    def decode(self, blocks: dict[int, bytes], length: int) -> bytes:
        """Rebuild a segment of `length` bytes from any `k` blocks, keyed by block number."""
        if len(blocks) < self.k:
            raise ValueError(f"need {self.k} blocks to decode, have {len(blocks)}")
        if self.k == 1:
            return bytes(next(iter(blocks.values())))[:length]
        if all(i in blocks for i in range(self.k)):
            return b"".join(blocks[i] for i in range(self.k))[:length]
        return b"".join(self._data_blocks(blocks))[:length]

    def rebuild(self, blocks: dict[int, bytes], wanted) -> dict[int, bytes]:
        """Blocks `wanted` of a segment from any `k` of its blocks, byte for byte those
        `encode` made (padding included), without joining and re-splitting the segment:
        a lost data block comes out of the decoder, a lost parity block is encoded alone."""
        if len(blocks) < self.k:
            raise ValueError(f"need {self.k} blocks to rebuild, have {len(blocks)}")
        if self.k == 1:
            block = bytes(next(iter(blocks.values())))
            return {i: block for i in wanted}
        out = {i: blocks[i] for i in wanted if i in blocks}
        todo = [i for i in wanted if i not in blocks]
        if todo and self._isal:
            out.update(zip(todo, self._combine(blocks, tuple(todo))))
        elif todo:
            data = self._data_blocks(blocks)
            out.update((i, data[i]) for i in todo if i < self.k)
            parity = tuple(i for i in todo if i >= self.k)
            if parity:
                out.update(zip(parity, self._encoder.encode(tuple(data), parity)))
        return out

    def _data_blocks(self, blocks: dict[int, bytes]) -> list[bytes]:
        """The k data blocks of a segment, decoded only if one is missing."""
        if all(i in blocks for i in range(self.k)):
            return [blocks[i] for i in range(self.k)]
        if self._isal:
            missing = tuple(i for i in range(self.k) if i not in blocks)
            rebuilt = dict(zip(missing, self._combine(blocks, missing)))
            return [blocks[i] if i in blocks else rebuilt[i] for i in range(self.k)]
        nums = tuple(sorted(blocks)[:self.k])
        return list(self._decoder.decode(tuple(blocks[i] for i in nums), nums))

    def _combine(self, blocks: dict[int, bytes], wanted: tuple[int, ...]) -> list[memoryview]:
        """Blocks `wanted` computed by ISA-L straight from k of the blocks at hand."""
        have = tuple(sorted(blocks)[:self.k])
        pinned = [codec_isal.pin(blocks[i]) for i in have]
        size = len(blocks[have[0]])
        rows = codec_isal.decode_rows(self.k, self.n, have, wanted)
        return codec_isal.combine(self.k, rows, [address for _, address in pinned], size)

