"""HTTP/1.1 over a plain socket, for requests no client library will send: raw bytes in
the path and headers, half-sent messages, bodies that trickle."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int            # 0: the connection closed before a status line arrived
    headers: dict[str, str]
    body: bytes

    def code(self) -> str:
        """The S3 error code of an error body, or ''."""
        start, end = self.body.find(b"<Code>"), self.body.find(b"</Code>")
        return self.body[start + 6:end].decode() if 0 <= start < end else ""


def address(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname, parts.port


def request(endpoint: str, method: str, target: bytes, headers: list[tuple[bytes, bytes]] = (),
            body: bytes = b"", timeout: float = 30.0) -> Answer:
    """One request on its own connection; Host and Content-Length are added unless given."""
    names = {name.lower() for name, _ in headers}
    head = [method.encode() + b" " + target + b" HTTP/1.1"]
    if b"host" not in names:
        host, port = address(endpoint)
        head.append(b"Host: %s:%d" % (host.encode(), port))
    head += [name + b": " + value for name, value in headers]
    if b"content-length" not in names and b"transfer-encoding" not in names and (body or method in ("PUT", "POST")):
        head.append(b"Content-Length: %d" % len(body))
    head.append(b"Connection: close")
    with socket.create_connection(address(endpoint), timeout=timeout) as s:
        s.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        return read_answer(s, method == "HEAD", timeout)


def read_answer(s: socket.socket, head_only: bool = False, timeout: float = 30.0) -> Answer:
    """Read one response (Content-Length framed, or until close)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        piece = s.recv(65536)
        if not piece:
            return Answer(0, {}, data)
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only or status in (204, 304) else int(headers.get("content-length", -1))
    while length < 0 or len(body) < length:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        piece = s.recv(65536)
        if not piece:
            break
        body += piece
    return Answer(status, headers, body if length < 0 else body[:length])


def fetch(method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
    """`request` for a whole URL (a presigned one, say) with str headers."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    sent = [(k.encode(), v.encode("utf-8")) for k, v in (headers or {}).items()]
    return request(f"{parts.scheme}://{parts.netloc}", method, target.encode(), sent, body)
