"""Raw zfec encode/decode speed, single thread, 1 MiB segments.

Why: it sets the ceiling erasure coding puts on one Pocket process. If the S3 benchmark
is far below these figures, the codec is not the bottleneck; if it is close, it is.

Encode computes the m parity blocks of a segment, as storage.codec does (the k data
blocks are plain slices). Decode is the worst case: all m parity blocks stand in for
m lost data blocks, so zfec has to rebuild m blocks from k. Rates are MiB of segment
data per second.

    python -m bench.zfec_speed [--policies 4+2,6+3,10+4] [--seconds 1.0] [--segment-mib 1]
"""
from __future__ import annotations

import argparse
import os
import time

import zfec

MIB = 1024 * 1024


def rate(fn, nbytes: int, seconds: float) -> float:
    """MiB/s of `fn()`, each call processing `nbytes`, repeated for at least `seconds`."""
    fn()  # warm up (tables, allocator)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        calls += 1
    return calls * nbytes / MIB / elapsed


def measure(k: int, m: int, segment: int, seconds: float) -> tuple[float, float]:
    """(encode MiB/s, worst-case decode MiB/s) for a k+m code; checks the decode round-trips."""
    n, size = k + m, -(-segment // k)
    seg = os.urandom(size * k)  # padded to a multiple of k, as the codec does
    data = tuple(seg[i * size:(i + 1) * size] for i in range(k))
    parity_nums = tuple(range(k, n))
    encoder, decoder = zfec.Encoder(k, n), zfec.Decoder(k, n)
    parity = encoder.encode(data, parity_nums)

    # Keep the last k - m data blocks; the m parity blocks replace the first m.
    nums = parity_nums + tuple(range(m, k)) if m <= k else parity_nums[:k]
    blocks = tuple(parity[i - k] if i >= k else data[i] for i in nums)
    if b"".join(decoder.decode(blocks, nums)) != seg:
        raise AssertionError(f"zfec {k}+{m} decode does not round-trip")

    enc = rate(lambda: encoder.encode(data, parity_nums), segment, seconds)
    dec = rate(lambda: decoder.decode(blocks, nums), segment, seconds)
    return enc, dec


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.zfec_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", default="4+2,6+3,10+4", help="comma-separated k+m codes; 4+2 is Pocket's default")
    p.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    p.add_argument("--segment-mib", type=float, default=1.0, help="segment size in MiB")
    args = p.parse_args(argv)
    segment = int(args.segment_mib * MIB)
    print(f"zfec {zfec.__version__}, {args.segment_mib:g} MiB segments, single thread\n")
    print("| policy | encode MiB/s | decode MiB/s (all parity) |")
    print("| --- | ---: | ---: |")
    for policy in args.policies.split(","):
        k, m = (int(x) for x in policy.split("+"))
        enc, dec = measure(k, m, segment, args.seconds)
        print(f"| {k}+{m} | {enc:.0f} | {dec:.0f} |")


if __name__ == "__main__":
    main()
