"""S3 XML bodies: a tiny builder so handlers describe structure, not string escaping."""
from __future__ import annotations

import datetime as dt
from email.utils import parsedate_to_datetime
from xml.etree import ElementTree as ET

from . import errors
from .xmltext import encodable, references

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def element(tag: str, children=None, text=None) -> ET.Element:
    el = ET.Element(tag)
    if text is not None:
        el.text = encodable(str(text))
    for child in children or ():
        if child is None:
            continue
        if isinstance(child, tuple):
            el.append(element(child[0], text=child[1]))
        else:
            el.append(child)
    return el


def document(root: ET.Element) -> bytes:
    root.set("xmlns", NS)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + references(ET.tostring(root, encoding="utf-8"))


def iso8601(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


LAST_HTTP_DATE = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc).timestamp()


def http_date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date (RFC 7231, or the older forms) as epoch seconds; None if it does not parse.

    A zone of "-0000" parses as naive, but means UTC here, not local time."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
        return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse(body: bytes) -> ET.Element | None:
    """Parse a request body; namespaces are stripped so handlers match plain tag names."""
    if not body.strip():
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise errors.MalformedXML() from None
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root
