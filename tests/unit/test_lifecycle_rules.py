"""Lifecycle rules as S3 defines them: the XML AWS accepts and refuses, and when each rule
expires an object, a noncurrent version, a delete marker or an incomplete upload."""
import calendar

import pytest

from storage.lifecycle import rules
from storage.s3 import lifecycle_xml
from storage.s3 import errors

DAY = 86400


def ts(y, mo, d, h=0, mi=0):
    return float(calendar.timegm((y, mo, d, h, mi, 0)))


def xml_rules(*bodies: str) -> bytes:
    return ("<LifecycleConfiguration xmlns='http://s3.amazonaws.com/doc/2006-03-01/'>"
            + "".join(f"<Rule>{b}</Rule>" for b in bodies) + "</LifecycleConfiguration>").encode()


def one(body: str) -> dict:
    return lifecycle_xml.parse(xml_rules(body))[0]


# --- parsing and validation -----------------------------------------------------------------

def test_parse_every_filter_form_and_render_roundtrip():
    parsed = lifecycle_xml.parse(xml_rules(
        "<ID>a</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>3</Days></Expiration>",
        "<ID>b</ID><Filter><Tag><Key>t</Key><Value>1</Value></Tag></Filter><Status>Disabled</Status>"
        "<Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration>",
        "<ID>c</ID><Filter><And><Prefix>p/</Prefix><Tag><Key>x</Key><Value>y</Value></Tag>"
        "<ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>100</ObjectSizeLessThan></And></Filter>"
        "<Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>5</NoncurrentDays>"
        "<NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration>",
        "<ID>d</ID><Prefix>old/</Prefix><Status>Enabled</Status>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation></AbortIncompleteMultipartUpload>",
        "<ID>e</ID><Filter><ObjectSizeGreaterThan>0</ObjectSizeGreaterThan></Filter><Status>Enabled</Status>"
        "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"))
    a, b, c, d, e = parsed
    assert a["filter"]["prefix"] == "logs/" and a["expiration"] == {"days": 3}
    assert b["status"] == "Disabled" and b["filter"]["tags"] == {"t": "1"}
    assert b["expiration"]["at"] == ts(2030, 1, 1)
    assert c["filter"] == {"prefix": "p/", "tags": {"x": "y"}, "size_gt": 10, "size_lt": 100}
    assert c["noncurrent"] == {"days": 5, "newer": 2}
    assert d["legacy_prefix"] and d["filter"]["prefix"] == "old/" and d["abort_days"] == 7
    assert e["expiration"] == {"delete_marker": True} and e["filter"]["size_gt"] == 0
    from storage.s3 import xml
    assert lifecycle_xml.parse(xml.document(lifecycle_xml.render(parsed))) == parsed


def test_rule_without_id_gets_one():
    assert len(one("<Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>")["id"]) == 32


@pytest.mark.parametrize("body, error", [
    (b"<LifecycleConfiguration><Rule>", errors.MalformedXML),
    (b"<Other/>", errors.MalformedXML),
    (b"<LifecycleConfiguration/>", errors.MalformedXML),
    (xml_rules("<ID>x</ID><Filter/><Expiration><Days>1</Days></Expiration>"), errors.MalformedXML),  # no Status
    (xml_rules("<ID>x</ID><Filter/><Status>On</Status><Expiration><Days>1</Days></Expiration>"), errors.MalformedXML),
    (xml_rules("<ID>x</ID><Prefix/><Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"),
     errors.MalformedXML),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z"
               "</Date></Expiration>"), errors.MalformedXML),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><Expiration><Days>one</Days></Expiration>"),
     errors.MalformedXML),
    (xml_rules("<ID>x</ID><Filter><Prefix>a</Prefix><Prefix>b</Prefix></Filter><Status>Enabled</Status>"
               "<Expiration><Days>1</Days></Expiration>"), errors.MalformedXML),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><Bogus/><Expiration><Days>1</Days></Expiration>"),
     errors.MalformedXML),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><Expiration><Days>0</Days></Expiration>"),
     errors.InvalidArgument),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><Expiration><Days>-3</Days></Expiration>"),
     errors.InvalidArgument),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><Expiration><Date>2030-01-01T10:00:00Z</Date>"
               "</Expiration>"), errors.InvalidArgument),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><Expiration><Date>soon</Date></Expiration>"),
     errors.InvalidArgument),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>0"
               "</NoncurrentDays></NoncurrentVersionExpiration>"), errors.InvalidArgument),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>0"
               "</DaysAfterInitiation></AbortIncompleteMultipartUpload>"), errors.InvalidArgument),
    (xml_rules("<ID>same</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>",
               "<ID>same</ID><Filter/><Status>Enabled</Status><Expiration><Days>2</Days></Expiration>"),
     errors.InvalidArgument),
    (xml_rules(f"<ID>{'i' * 256}</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"),
     errors.InvalidArgument),
    (xml_rules(*[f"<ID>r{i}</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"
                 for i in range(1001)]), errors.InvalidArgument),
    (xml_rules("<ID>x</ID><Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>10"
               "</ObjectSizeLessThan></And></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"),
     errors.InvalidArgument),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status>"), errors.InvalidRequest),  # no action
    (xml_rules("<ID>x</ID><Filter><Tag><Key>a</Key><Value>b</Value></Tag></Filter><Status>Enabled</Status>"
               "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
               "</AbortIncompleteMultipartUpload>"), errors.InvalidRequest),
    (xml_rules("<ID>x</ID><Filter/><Status>Enabled</Status><Transition><Days>30</Days>"
               "<StorageClass>GLACIER</StorageClass></Transition>"), errors.NotImplementedError_),
])
def test_refused_as_aws_refuses(body, error):
    with pytest.raises(error):
        lifecycle_xml.parse(body)


# --- when things expire ---------------------------------------------------------------------

def test_days_round_up_to_the_next_midnight_utc():
    assert rules.after_days(ts(2024, 3, 1, 10, 30), 1) == ts(2024, 3, 3)
    assert rules.after_days(ts(2024, 3, 1), 1) == ts(2024, 3, 2)   # already midnight: no extra day
    assert rules.after_days(ts(2024, 2, 28, 23, 59), 2) == ts(2024, 3, 2)   # leap year
    assert rules.after_days(10.5, 2, day_seconds=1.0) == 13.0   # the testing knob


def test_current_expiry_picks_the_earliest_matching_enabled_rule():
    rs = lifecycle_xml.parse(xml_rules(
        "<ID>long</ID><Filter/><Status>Enabled</Status><Expiration><Days>30</Days></Expiration>",
        "<ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>"
        "<Expiration><Days>2</Days></Expiration>",
        "<ID>off</ID><Filter/><Status>Disabled</Status><Expiration><Days>1</Days></Expiration>",
        "<ID>tagged</ID><Filter><Tag><Key>tmp</Key><Value>yes</Value></Tag></Filter><Status>Enabled</Status>"
        "<Expiration><Date>2024-03-02T00:00:00Z</Date></Expiration>",
        "<ID>big</ID><Filter><ObjectSizeGreaterThan>1000</ObjectSizeGreaterThan></Filter><Status>Enabled</Status>"
        "<Expiration><Days>5</Days></Expiration>"))
    created = ts(2024, 3, 1, 12)
    assert rules.current_expiry(rs, "data/x", 10, {}, created) == (ts(2024, 4, 1), "long")
    assert rules.current_expiry(rs, "logs/x", 10, {}, created) == (ts(2024, 3, 4), "logs")
    assert rules.current_expiry(rs, "logs/x", 10, {"tmp": "yes"}, created) == (ts(2024, 3, 2), "tagged")
    assert rules.current_expiry(rs, "logs/x", 10, {"tmp": "no"}, created).rule_id == "logs"
    assert rules.current_expiry(rs, "data/x", 1001, {}, created) == (ts(2024, 3, 7), "big")
    assert rules.current_expiry(rs, "data/x", 1000, {}, created).rule_id == "long"   # not greater than
    assert rules.current_expiry([r for r in rs if r["id"] == "off"], "a", 1, {}, created) is None


def test_upload_abort_counts_from_initiation_and_only_prefix_filters():
    rs = lifecycle_xml.parse(xml_rules(
        "<ID>mpu</ID><Filter><Prefix>up/</Prefix></Filter><Status>Enabled</Status>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>3</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload>"))
    assert rules.upload_abort(rs, "up/a", ts(2024, 1, 1, 5)) == (ts(2024, 1, 5), "mpu")
    assert rules.upload_abort(rs, "other", ts(2024, 1, 1, 5)) is None
    assert rules.current_expiry(rs, "up/a", 1, {}, ts(2024, 1, 1)) is None   # no Expiration: objects stay


def _versions(*spec):
    """Versions newest first from (created, is_delete_marker) pairs."""
    return [{"version_id": f"v{i}", "created": c, "size": 10, "tags": {}, "delete_marker": dm}
            for i, (c, dm) in enumerate(spec)]


def test_noncurrent_versions_expire_days_after_the_next_newer_version_was_made():
    rs = lifecycle_xml.parse(xml_rules(
        "<ID>nc</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>2"
        "</NoncurrentDays></NoncurrentVersionExpiration>"))
    versions = _versions((ts(2024, 1, 10, 8), False), (ts(2024, 1, 5, 8), False), (ts(2024, 1, 1), False))
    # v1 became noncurrent on Jan 10 08:00 -> expires Jan 13 00:00; v2 on Jan 5 -> Jan 8 00:00
    assert rules.noncurrent_expiry(rs, "k", 10, {}, versions[0]["created"], 0) == (ts(2024, 1, 13), "nc")
    assert [v["version_id"] for v, _ in rules.expired_versions(rs, "k", versions, ts(2024, 1, 9))] == ["v2"]
    assert [v["version_id"] for v, _ in rules.expired_versions(rs, "k", versions, ts(2024, 1, 13))] == ["v1", "v2"]
    assert rules.expired_versions(rs, "k", versions, ts(2024, 1, 7)) == []
    # the current version never goes this way, however old
    assert all(v["version_id"] != "v0" for v, _ in rules.expired_versions(rs, "k", versions, ts(2030, 1, 1)))


def test_newer_noncurrent_versions_are_kept():
    rs = lifecycle_xml.parse(xml_rules(
        "<ID>keep2</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>1"
        "</NoncurrentDays><NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration>"))
    versions = _versions(*[(ts(2024, 1, 10 - i), False) for i in range(5)])   # v0 current, v1..v4 noncurrent
    gone = [v["version_id"] for v, _ in rules.expired_versions(rs, "k", versions, ts(2025, 1, 1))]
    assert gone == ["v3", "v4"]   # v1 and v2 are the two newest noncurrent ones


def test_noncurrent_delete_markers_expire_and_an_expired_delete_marker_goes():
    rs = lifecycle_xml.parse(xml_rules(
        "<ID>nc</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>1"
        "</NoncurrentDays></NoncurrentVersionExpiration>",
        "<ID>dm</ID><Filter><Prefix>a</Prefix></Filter><Status>Enabled</Status><Expiration>"
        "<ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"))
    versions = _versions((ts(2024, 1, 3), False), (ts(2024, 1, 2), True), (ts(2024, 1, 1), False))
    assert [v["version_id"] for v, _ in rules.expired_versions(rs, "a", versions, ts(2024, 2, 1))] == ["v1", "v2"]
    marker_only = _versions((ts(2024, 1, 3), True))
    assert rules.expired_versions(rs, "a", marker_only, ts(2024, 1, 3)) == [(marker_only[0], "dm")]
    assert rules.expired_versions(rs, "b", marker_only, ts(2024, 1, 3)) == []   # rule's prefix is "a"
    # a delete marker with noncurrent versions behind it is not expired (yet)
    with_old = _versions((ts(2024, 1, 3), True), (ts(2024, 1, 2, 12), False))
    assert [v["version_id"] for v, _ in rules.expired_versions(rs, "a", with_old, ts(2024, 1, 3, 12))] == []


def test_scan_prefixes_cover_every_rule_with_the_fewest_listings():
    def r(prefix):
        return {"filter": {"prefix": prefix}}
    assert rules.scan_prefixes([r("logs/"), r("logs/app/"), r("tmp/")]) == ["logs/", "tmp/"]
    assert rules.scan_prefixes([r("logs/"), r("")]) == [""]
    assert rules.scan_prefixes([]) == []
