"""The copy's timestamp parser gives what botocore's own gives, for every form a source sends.

Last-Modified is carried into Pocket and compared by verify: a parser that shifted a zone
or dropped a fraction would make every copied version's time wrong."""
import datetime

import pytest
from botocore.utils import parse_timestamp as botocore_parse

from storage.migrate.source_common import parse_timestamp

FORMS = [
    "2026-12-03T08:00:00.000Z",           # S3 listings
    "2026-12-03T08:00:00Z",
    "2026-12-03T08:00:00.123456Z",
    "2026-12-03T08:00:00.1234567Z",       # more digits than microseconds
    "2026-12-03T08:00:00.1Z",
    "2026-12-03T08:00:00+02:00",          # an offset instead of Z
    "2026-12-03 08:00:00-05:00",
    "Thu, 03 Dec 2026 08:00:00 GMT",      # HTTP date (headers)
    "1764748800", 1764748800, 1764748800.5,  # epoch seconds
    "2026-12-03T08:00:00",                # no zone at all
]


@pytest.mark.parametrize("value", FORMS, ids=repr)
def test_same_instant_and_zone_as_botocore(value):
    ours, theirs = parse_timestamp(value), botocore_parse(value)
    assert ours == theirs
    assert ours.utcoffset() == theirs.utcoffset()
    assert (ours.tzinfo is None) == (theirs.tzinfo is None)
    if ours.tzinfo is not None:
        assert ours.timestamp() == theirs.timestamp()


def test_a_listing_parsed_by_the_copy_client_keeps_fractions():
    got = parse_timestamp("2026-12-03T08:00:00.250Z")
    assert got == datetime.datetime(2026, 12, 3, 8, 0, 0, 250000, tzinfo=datetime.timezone.utc)


def test_garbage_is_refused_as_botocore_refuses_it():
    with pytest.raises(ValueError):
        botocore_parse("not a time")
    with pytest.raises(ValueError):
        parse_timestamp("not a time")
    with pytest.raises(ValueError):
        parse_timestamp("2026-13-45T99:00:00Z")
