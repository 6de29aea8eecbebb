"""The access log an operator greps: one line per S3 request, findable by the request id the
client saw, with who, what, how it ended and how many bytes; JSON or text; rotation-friendly."""
import json
import os
import random
import signal
import socket
import time

import pytest
from botocore.exceptions import ClientError

from .harness import ACCESS_KEY, ProcCluster
from .signing import sign


def _body(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _lines(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _access_line(path: str, request_id: str, timeout: float = 20.0) -> dict:
    """The access line of one request: written just after its response, so wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in _lines(path) if line.get("request_id") == request_id]
        if found:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, f"no access-log line for request {request_id} in {path}"
        time.sleep(0.05)


@pytest.fixture
def json_cluster(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True,
                    sections={"log": {"format": "json", "file": "logs/pocket.log"},
                              "scrub": {"start_delay": 0.5, "collect_interval": 1.0},
                              "lifecycle": {"interval": 1.0}})
    c.log_file = os.path.join(c.root, "logs", "pocket.log")
    yield c.start()
    c.close()


def test_json_access_log_has_the_s3_fields_and_the_client_request_id(json_cluster):
    c, log = json_cluster, json_cluster.log_file
    s3 = c.client()
    s3.create_bucket(Bucket="logged")
    body = _body(2 * 1024 * 1024 + 99, 3)
    put = s3.put_object(Bucket="logged", Key="dir/a key", Body=body)
    line = _access_line(log, put["ResponseMetadata"]["RequestId"])
    assert (line["operation"], line["method"], line["status"], line["error"]) == ("put_object", "PUT", 200, "")
    assert (line["user"], line["bucket"], line["key"], line["remote"]) == (ACCESS_KEY, "logged", "dir/a key",
                                                                           "127.0.0.1")
    assert line["bytes_in"] >= len(body) and line["bytes_out"] == 0
    assert line["duration_ms"] > 0 and line["level"] == "info" and line["logger"] == "pocket.access"
    assert "Boto3" in line["user_agent"] or "botocore" in line["user_agent"]

    got = s3.get_object(Bucket="logged", Key="dir/a key", Range="bytes=100-1099")
    assert got["Body"].read() == body[100:1100]
    line = _access_line(log, got["ResponseMetadata"]["RequestId"])
    assert (line["operation"], line["status"], line["bytes_out"], line["bytes_in"]) == ("get_object", 206, 1000, 0)

    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket="logged", Key="not-there")
    line = _access_line(log, missing.value.response["ResponseMetadata"]["RequestId"])
    assert (line["status"], line["error"], line["key"]) == (404, "NoSuchKey", "not-there")

    forger = c.client(retries=1, user=(ACCESS_KEY, "not-the-secret"))
    with pytest.raises(ClientError) as forged:
        forger.put_object(Bucket="logged", Key="x", Body=b"never stored")
    line = _access_line(log, forged.value.response["ResponseMetadata"]["RequestId"])
    assert (line["status"], line["error"], line["user"]) == (403, "SignatureDoesNotMatch", "")

    # Background work logs a summary line per pass into the same stream.
    for summary in ("scrub pass:", "lifecycle pass:"):
        deadline = time.monotonic() + 60
        while not any(line.get("message", "").startswith(summary) for line in _lines(log)):
            assert time.monotonic() < deadline, f"no {summary!r} summary in the log"
            time.sleep(0.2)


def test_client_mistakes_leave_no_traceback(json_cluster):
    c, log = json_cluster, json_cluster.log_file
    s3 = c.client()
    s3.create_bucket(Bucket="mistakes")
    # A client that hangs up in the middle of its (signed) upload, and one that sends garbage.
    signed = sign("PUT", f"{c.endpoint}/mistakes/cut", {"Content-Length": str(4 << 20)})
    head = f"Host: 127.0.0.1:{c.port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.headers.items())
    with socket.create_connection(("127.0.0.1", c.port)) as sock:
        sock.sendall(f"PUT /mistakes/cut HTTP/1.1\r\n{head}\r\n".encode() + _body(1_500_000, 4))
    deadline = time.monotonic() + 20
    while not [line for line in _lines(log) if line.get("key") == "cut"]:
        assert time.monotonic() < deadline, "the cut upload left no access-log line"
        time.sleep(0.05)
    with socket.create_connection(("127.0.0.1", c.port)) as sock:
        sock.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        sock.recv(4096)
    with socket.create_connection(("127.0.0.1", c.port)) as sock:   # HTTP/1.1 without Host
        sock.sendall(b"GET /mistakes HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert b" 400 " in sock.recv(4096).split(b"\r\n")[0]
    with pytest.raises(ClientError):
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    marker = s3.head_bucket(Bucket="mistakes")["ResponseMetadata"]["RequestId"]
    _access_line(log, marker)
    lines = _lines(log)
    assert not [line for line in lines if "traceback" in line or line["level"] in ("error", "critical")], lines
    assert [line for line in lines if "Missing 'Host' header" in line.get("message", "")]
    with pytest.raises(ClientError):
        s3.head_object(Bucket="mistakes", Key="cut")   # nothing of the cut upload became an object


def test_sighup_reopens_the_log_file_for_rotation(json_cluster):
    c, log = json_cluster, json_cluster.log_file
    s3 = c.client()
    s3.create_bucket(Bucket="rotated")
    before = s3.put_object(Bucket="rotated", Key="before", Body=_body(1000, 5))["ResponseMetadata"]["RequestId"]
    _access_line(log, before)
    os.rename(log, log + ".1")            # what logrotate does
    c.signal("gateway", signal.SIGHUP)
    deadline = time.monotonic() + 20
    while not os.path.exists(log):
        assert time.monotonic() < deadline, "the gateway did not reopen its log file on SIGHUP"
        time.sleep(0.05)
    after = s3.put_object(Bucket="rotated", Key="after", Body=_body(1000, 6))["ResponseMetadata"]["RequestId"]
    _access_line(log, after)
    rotated = [line.get("request_id") for line in _lines(log + ".1")]
    assert before in rotated and after not in rotated


def test_text_log_by_default_names_the_request(tmp_path):
    c = ProcCluster(str(tmp_path / "cluster"), embedded=True).start()
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="texty")
        with pytest.raises(ClientError) as missing:
            s3.get_object(Bucket="texty", Key="gone")
        request_id = missing.value.response["ResponseMetadata"]["RequestId"]
        deadline = time.monotonic() + 20
        while request_id not in c.log("gateway"):
            assert time.monotonic() < deadline, "no access line in the gateway's output"
            time.sleep(0.05)
        line = next(row for row in c.log("gateway").splitlines() if request_id in row)
        assert "pocket.access" in line and "GET texty/gone get_object 404 NoSuchKey" in line
        assert f"user={ACCESS_KEY}" in line and not line.lstrip().startswith("{")
    finally:
        c.close()
