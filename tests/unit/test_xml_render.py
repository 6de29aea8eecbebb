"""The text renderer listings use (xml.leaf/branch/text_document) must give the bytes the
Element builder gives, for any key a client can send; and iso8601 must keep its format."""
from __future__ import annotations

import datetime as dt
import random

import pytest

from storage.s3 import xml

ALPHABET = "aZ09/-_.~ &<>\"'\r\n\t\x00\x01\x1f\x7fé€\U0001F600\udcff\ud800"


# what the index can hold: keys decoded from UTF-8 and orjson's strings have no lone surrogates
INDEXED = ALPHABET.replace("\udcff", "").replace("\ud800", "")


def _text(rng: random.Random, alphabet: str = ALPHABET) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


def test_text_rendering_matches_element_rendering():
    rng = random.Random(14)
    for _ in range(2000):
        fields = [(f"F{i}", _text(rng) if rng.random() < 0.8 else rng.randrange(10**6)) for i in range(rng.randrange(4))]
        entries = []
        parts = []
        for _ in range(rng.randrange(4)):
            kids = [(f"K{i}", _text(rng)) for i in range(rng.randrange(3))]
            entries.append(xml.element("Contents", kids))
            parts.append(xml.branch("Contents", [xml.leaf(t, v) for t, v in kids]))
        want = xml.document(xml.element("ListBucketResult", fields + entries))
        got = xml.text_document("ListBucketResult", [xml.leaf(t, v) for t, v in fields] + parts)
        assert got == want


@pytest.mark.parametrize("alphabet", [ALPHABET, INDEXED], ids=["any text", "index text"])
def test_listing_entries_match_the_leaf_and_branch_rendering(alphabet):
    """Listings render each entry as one string (listing._entries); it must be what
    xml.leaf and xml.branch give field by field, for any key, ETag and owner: text the
    index can hold takes the fast path (no surrogate check per field), any other text
    the field by field one."""
    from types import SimpleNamespace
    from urllib.parse import quote

    from storage.s3 import listing

    def by_fields(page, enc, owner):
        leaf, out = xml.leaf, []
        for key, rec in page.contents:
            parts = [leaf("Key", enc(key)), leaf("LastModified", xml.iso8601(rec["created"])),
                     leaf("ETag", f'"{rec["etag"]}"'), leaf("Size", rec["size"]),
                     "<StorageClass>STANDARD</StorageClass>"]
            if owner:
                name = rec.get("owner", "")
                parts.append(xml.branch("Owner", [leaf("ID", name), leaf("DisplayName", name)]))
            out.append(xml.branch("Contents", parts))
        return out + [xml.branch("CommonPrefixes", [leaf("Prefix", enc(p))]) for p in page.common_prefixes]

    rng = random.Random(2006)
    for _ in range(300):
        contents = [(_text(rng, alphabet) or "k",
                     {"created": rng.uniform(0, 4e9), "etag": _text(rng, alphabet), "size": rng.randrange(10**12),
                      **({"owner": _text(rng, alphabet)} if rng.random() < 0.8 else {})})
                    for _ in range(rng.randrange(5))]
        page = SimpleNamespace(contents=contents,
                               common_prefixes=[_text(rng, alphabet) or "p/" for _ in range(rng.randrange(3))])
        for enc in (lambda s: s, lambda s: quote(s, safe="/", errors="replace")):
            for owner in (False, True):
                assert listing._entries(None, page, enc, owner) == by_fields(page, enc, owner)


def test_iso8601_is_utc_with_truncated_milliseconds():
    rng = random.Random(8601)
    for _ in range(20000):
        ts = round(rng.uniform(0, 4e9), rng.randrange(7))
        want = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert xml.iso8601(ts) == want
    assert xml.iso8601(1764720000.9999) == "2025-12-03T00:00:00.999Z"


def test_iso8601_of_many_times_in_few_seconds_matches_datetime():
    """Listings render runs of timestamps within one second (its text is kept): around
    second boundaries, rounding to microseconds must carry into the next second exactly as
    datetime does, whatever second was rendered before."""
    rng = random.Random(3339)
    base = 1764720000
    for _ in range(20000):
        ts = base + rng.randrange(3) + rng.choice([0.0, 0.0005, 0.9994999, 0.9995, 0.9999994, 0.9999995,
                                                   0.9999996, rng.random()])
        want = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert xml.iso8601(ts) == want, ts
    assert xml.iso8601(base + 0.9999996) == "2025-12-03T00:00:01.000Z"


def test_http_date_is_imf_fixdate():
    rng = random.Random(7231)
    for _ in range(20000):
        ts = rng.uniform(0, xml.LAST_HTTP_DATE)
        want = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
        assert xml.http_date(ts) == want
