"""Scrapes under several workers (storage/metrics.py): the values of every worker, and no
failure while a sibling is creating its values file.

Run in a child process: multiprocess mode is process-wide (an environment variable and
prometheus_client's value class), and must not leak into the other tests."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def _scrape(folder: str, script: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import os, sys
        from storage import metrics
        metrics.share_between_workers({folder!r})
        m = metrics.Metrics()
        m.request_done("put_object", 200, 0.01)
        m.disk_up.labels("d1").set(1)
        {script}
        sys.stdout.write(m.render().decode())
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_scrape_while_a_sibling_creates_its_values_file_succeeds(tmp_path):
    # prometheus_client creates a file empty, then sizes it: the moment a sibling's scrape saw
    # it that way, the scrape failed with struct.error (a 500 to Prometheus)
    out = _scrape(str(tmp_path), f"open(os.path.join({str(tmp_path)!r}, 'counter_999999.db'), 'ab').close()")
    assert out.returncode == 0, out.stderr
    assert 'pocket_s3_requests_total{operation="put_object",status="200"} 1.0' in out.stdout
    assert 'pocket_disk_up{disk="d1"} 1.0' in out.stdout


def test_values_of_every_worker_are_summed(tmp_path):
    for _ in range(2):     # two processes, one after the other, as two workers
        out = _scrape(str(tmp_path), "")
        assert out.returncode == 0, out.stderr
    assert 'pocket_s3_requests_total{operation="put_object",status="200"} 2.0' in out.stdout
