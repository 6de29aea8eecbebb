"""The access log line of a request whose key is not UTF-8 (kept surrogate-escaped)."""
import logging
from types import SimpleNamespace

from storage.s3.access_log import AccessLogger
from storage.s3.request import split_path


class _Request(dict):
    def __init__(self, bucket, key):
        super().__init__(bucket=bucket, key=key, request_id="R1", operation="get_object")
        self.path, self.method, self.remote = f"/{bucket}/x", "GET", "127.0.0.1"
        self.headers = {}
        self.content = SimpleNamespace(total_bytes=0)


def test_a_key_that_is_not_utf8_is_logged_with_its_raw_bytes_quoted(caplog):
    bucket, key = split_path("/b/k%9Ay?x=1")
    log = AccessLogger(logging.getLogger("pocket.access.test"), "")
    response = SimpleNamespace(status=404, body_length=0, content_length=0)
    with caplog.at_level(logging.INFO, logger="pocket.access.test"):
        log.log(_Request(bucket, key), response, 0.001)
    assert "GET b/k%9Ay get_object 404" in caplog.text
