"""A multipart/form-data body read as it arrives: small fields first, then one file, streamed.

Browser form uploads (POST object) put every field before the file, and S3 ignores what
comes after it. So the fields are read into memory under a hard cap (a form cannot make
the gateway buffer more than `MAX_FIELDS_BYTES`), and the file is handed on as a stream
of pieces that never holds more than one read plus a delimiter's worth of bytes.
aiohttp's own multipart reader is not used: it reads around the slow-client limits
that `body.raw_body` enforces on every other upload.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import AsyncIterator

from multidict import CIMultiDict

from . import errors

MAX_FIELDS_BYTES = 64 << 10   # every field before the file, headers included
_MAX_PART_HEADERS = 8 << 10


@dataclass
class Form:
    fields: CIMultiDict = field(default_factory=CIMultiDict)   # name -> value, names as sent
    filename: str | None = None      # the file part's filename ("" when the browser sent none)
    file_type: str | None = None     # the file part's own Content-Type
    file: AsyncIterator[bytes] | None = None


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type, or MalformedPOSTRequest."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise malformed("The body of a POST request must be multipart/form-data.")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"').encode("latin-1", "replace")
    raise malformed("The multipart/form-data Content-Type has no boundary.")


def malformed(detail: str) -> errors.S3Error:
    return errors.MalformedPOSTRequest(f"The body of your POST request is not well-formed "
                                       f"multipart/form-data: {detail}")


class _Buffer:
    """Bytes from the body not yet consumed, refilled on demand."""

    def __init__(self, chunks: AsyncIterator[bytes]):
        self.chunks, self.data, self.ended = chunks, bytearray(), False

    async def fill(self) -> bool:
        if self.ended:
            return False
        chunk = await anext(self.chunks, None)
        if chunk is None:
            self.ended = True
            return False
        self.data += chunk
        return True

    async def until(self, marker: bytes, limit: int, what: str) -> bytes:
        """Everything up to `marker` (consumed, marker too); at most `limit` bytes before it."""
        start = 0
        while (at := self.data.find(marker, start)) < 0:
            if len(self.data) > limit + len(marker):
                raise errors.MaxPostPreDataLengthExceededError()
            start = max(0, len(self.data) - len(marker) + 1)
            if not await self.fill():
                raise malformed(f"the body ended inside {what}.")
        if at > limit:
            raise errors.MaxPostPreDataLengthExceededError()
        found = bytes(self.data[:at])
        del self.data[:at + len(marker)]
        return found


async def read_form(chunks: AsyncIterator[bytes], boundary: bytes) -> Form:
    """Read fields up to the file part; `form.file` then streams the file's bytes.

    The file stream raises MalformedPOSTRequest if the closing delimiter never comes (a
    truncated body must not be stored as a shorter file)."""
    buf, form, budget = _Buffer(chunks), Form(), MAX_FIELDS_BYTES
    delimiter = b"\r\n--" + boundary
    buf.data += b"\r\n"   # the first delimiter has no CRLF before it
    await buf.until(delimiter, budget, "the preamble")
    while True:
        while len(buf.data) < 2 and await buf.fill():
            pass
        if buf.data[:2] == b"--":
            return form   # the closing delimiter: a form without a file
        head = await buf.until(b"\r\n\r\n", _MAX_PART_HEADERS, "a part's headers")
        budget -= len(head)
        name, filename, part_type = _part_headers(head)
        if name.lower() == "file":   # by name, as S3 does: `requests`' files= gives every field a filename
            form.filename, form.file_type = filename or "", part_type
            form.file = _file(buf, delimiter)
            return form
        if budget < 0:
            raise errors.MaxPostPreDataLengthExceededError()
        value = await buf.until(delimiter, budget, f"the field {name!r}")
        budget -= len(value)
        try:
            form.fields.add(name, value.decode("utf-8"))
        except UnicodeDecodeError:
            raise errors.InvalidArgument(f"The form field {name} is not UTF-8 text.", ArgumentName=name) from None


def _part_headers(head: bytes) -> tuple[str, str | None, str | None]:
    text = head.decode("utf-8", "replace").lstrip("\r\n")
    name = filename = part_type = None
    for line in text.split("\r\n"):
        header, _, value = line.partition(":")
        header = header.strip().lower()
        if header == "content-type":
            part_type = value.strip()
        elif header == "content-disposition":
            params = _disposition(value)
            name, filename = params.get("name"), params.get("filename")
    if name is None:
        raise malformed("a part has no Content-Disposition name.")
    return name, filename, part_type


def _disposition(value: str) -> dict[str, str]:
    """form-data; name="x"; filename="a;b.txt" -> {"name": "x", "filename": "a;b.txt"}."""
    message = Message()
    message["Content-Disposition"] = value
    return {k.lower(): collapse_rfc2231_value(v) for k, v in message.get_params([], header="Content-Disposition")[1:]}


async def _file(buf: _Buffer, delimiter: bytes) -> AsyncIterator[bytes]:
    keep = len(delimiter) - 1   # a delimiter may straddle two reads
    while True:
        at = buf.data.find(delimiter)
        if at >= 0:
            if at:
                yield bytes(buf.data[:at])
            buf.data.clear()
            return
        if len(buf.data) > keep:
            piece = bytes(buf.data[:-keep])
            del buf.data[:-keep]
            yield piece
        if not await buf.fill():
            raise errors.IncompleteBody("The POST body ended before the file's closing boundary; "
                                        "nothing was stored. Send the whole form again.")
