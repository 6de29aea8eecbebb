"""What this box allows, measured in the same run as the servers: the disk and the CPU.

- Sequential write to a file in the work folder, 4 MiB writes, an fsync after every one
  (what a durable server's large PUT can reach at best) and with one fsync at the end
  (the page cache's speed).
- MD5 (the ETag of a single PUT) and 4+2 encoding of 1 MiB segments with the kernel Pocket
  runs (storage/codec.py: ISA-L where it loads), on one core and on every core at once
  (one process per core): a large PUT under EC 4+2 needs both, so `md5+encode`
  (1 / (1/md5 + 1/encode)) is what the CPU allows per PUT stream. zfec's own speed is
  shown beside it, for the figures of earlier runs.

    python -m bench.ceilings --work DIR [--seconds 1]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor

from .zfec_speed import measure, rate

MIB = 1024 * 1024
CHUNK = 4 * MIB


def fsync_write(folder: str, total: int, fsync_every: bool) -> float:
    """MiB/s writing `total` bytes sequentially in 4 MiB writes; fsync after each or only at the end."""
    path = os.path.join(folder, "ceiling-write.tmp")
    block = os.urandom(CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(total // CHUNK):
            os.write(fd, block)
            if fsync_every:
                os.fsync(fd)
        os.fsync(fd)
        return total / MIB / (time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)


def md5_rate(seconds: float) -> float:
    block = os.urandom(MIB)
    return rate(lambda: hashlib.md5(block).digest(), MIB, seconds)


def encode_rate(seconds: float) -> float:
    from storage.codec import Codec
    codec, segment = Codec(4, 2), os.urandom(MIB)
    return rate(lambda: codec.encode(segment), MIB, seconds)


def zfec_rate(seconds: float) -> float:
    return measure(4, 2, MIB, seconds)[0]


def on_every_core(fn, seconds: float, cores: int) -> float:
    """Sum of `fn(seconds)` run in `cores` processes at once."""
    with ProcessPoolExecutor(cores) as pool:
        return sum(pool.map(fn, [seconds] * cores))


def measure_all(work: str, seconds: float = 1.0, write_mib: int = 256) -> dict:
    """Every ceiling, in MiB/s."""
    cores = os.cpu_count() or 1
    os.makedirs(work, exist_ok=True)
    out = {"cores": cores,
           "write_fsync_4mib": fsync_write(work, write_mib * MIB, True),
           "write_fsync_end": fsync_write(work, write_mib * MIB, False),
           "md5_core": md5_rate(seconds), "encode_core": encode_rate(seconds),
           "md5_all": on_every_core(md5_rate, seconds, cores),
           "encode_all": on_every_core(encode_rate, seconds, cores), "zfec_core": zfec_rate(seconds)}
    for where in ("core", "all"):
        out[f"md5_encode_{where}"] = 1 / (1 / out[f"md5_{where}"] + 1 / out[f"encode_{where}"])
    return out


def markdown(c: dict) -> str:
    rows = [("sequential write, fsync every 4 MiB", c["write_fsync_4mib"], ""),
            ("sequential write, one fsync at the end", c["write_fsync_end"], ""),
            ("MD5", c["md5_core"], c["md5_all"]),
            ("4+2 encode as Pocket runs it, 1 MiB segments", c["encode_core"], c["encode_all"]),
            ("zfec 4+2 encode (before session 8)", c.get("zfec_core", c["encode_core"]), ""),
            ("MD5 + 4+2 encode of the same bytes", c["md5_encode_core"], c["md5_encode_all"])]
    lines = [f"| box ceiling | MiB/s (one core) | MiB/s (all {c['cores']} cores busy) |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {one:,.0f} | {f'{every:,.0f}' if every != '' else '—'} |" for name, one, every in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ceilings", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="folder on the disk to measure (a file is written and removed)")
    p.add_argument("--seconds", type=float, default=1.0, help="time per CPU measurement")
    p.add_argument("--write-mib", type=int, default=256, help="MiB written per disk measurement")
    args = p.parse_args()
    print(markdown(measure_all(args.work, args.seconds, args.write_mib)))


if __name__ == "__main__":
    main()
