"""Writers that keep PUTting while a test kills something under them.

Each thread PUTs bodies unique at every offset, cycling through `sizes`, each on a client
of its own with one attempt, and records what was acknowledged: after the kill, every
acknowledged body must read back whole (what failed was never promised)."""
from __future__ import annotations

import threading

from .conftest import payload


class Writers:
    def __init__(self, cluster, bucket: str, sizes: tuple[int, ...], seed: str, threads: int = 4):
        self.cluster, self.bucket, self.sizes, self.seed = cluster, bucket, sizes, seed
        self.acked: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(n,)) for n in range(threads)]

    def __enter__(self) -> "Writers":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _write(self, n: int) -> None:
        s3 = self.cluster.client(retries=1)
        i = 0
        while not self._stop.is_set():
            key = f"w{n}-{i}"
            body = payload(self.sizes[i % len(self.sizes)], f"{self.seed}-{n}-{i}")
            try:
                s3.put_object(Bucket=self.bucket, Key=key, Body=body)
                self.acked[key] = body
            except Exception:   # the request the killed process was handling fails; the client may retry
                pass
            i += 1
