"""Walking a listing page by page, as a client does, through the gateway's fast paths:
fields escaped without a regex (s3/listing.py) and the next page read ahead while the
client parses this one (index/list_ahead.py). Every page must be what S3 gives."""
from __future__ import annotations

from urllib.parse import quote, urlencode
from xml.etree import ElementTree as ET

from .conftest import payload
from .signing import send, sign

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
ODD = ["a&b/1", "a&b/2", "a<b>/x", "café/☃ 1", "café/☃ 2", "d/1", "e & f", "\"quoted'\"", "z z/\U0001F600",
       "tab\there", "amp;&amp;"]
RUN = [f"run/p{i}/k" for i in range(6)] + ["run/top"]


def _bytes_order(keys):
    return sorted(keys, key=lambda k: k.encode())


def _raw_walk(cluster, bucket: str, **params) -> tuple[list[str], list[str], list[bytes]]:
    """ListObjectsV2 without encoding-type, signed by hand (botocore always asks for url
    encoding): keys and common prefixes of every page, and the bodies as sent."""
    keys, prefixes, bodies, token = [], [], [], None
    while True:
        query = {"list-type": "2", **params, **({"continuation-token": token} if token else {})}
        status, _, body = send(sign("GET", f"{cluster.endpoint}/{bucket}?{urlencode(query, quote_via=quote)}"))
        assert status == 200, body
        bodies.append(body)
        root = ET.fromstring(body)
        keys += [c.find(f"{NS}Key").text for c in root.iter(f"{NS}Contents")]
        prefixes += [p.find(f"{NS}Prefix").text for p in root.iter(f"{NS}CommonPrefixes")]
        if root.find(f"{NS}IsTruncated").text != "true":
            return keys, prefixes, bodies
        token = root.find(f"{NS}NextContinuationToken").text


def test_keys_xml_must_escape_list_exactly_in_pages(cluster, bucket):
    s3 = cluster.client()
    for i, key in enumerate(ODD + RUN):
        s3.put_object(Bucket=bucket, Key=key, Body=payload(64 + i, seed=key))
    keys, _, bodies = _raw_walk(cluster, bucket, **{"max-keys": "3"})
    assert keys == _bytes_order(ODD + RUN)
    whole = b"".join(bodies)
    assert b"<Key>a&amp;b/1</Key>" in whole and b"<Key>a&lt;b&gt;/x</Key>" in whole
    assert b"<Key>amp;&amp;amp;</Key>" in whole and "<Key>café/☃ 1</Key>".encode() in whole
    # url encoding, through boto3's paginator (it asks for it and decodes)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == _bytes_order(ODD + RUN)


def test_page_boundaries_inside_a_run_of_common_prefixes(cluster, bucket):
    s3 = cluster.client()
    for key in RUN + ["a&b/1", "a&b/2", "e & f"]:
        s3.put_object(Bucket=bucket, Key=key, Body=payload(32, seed=key))
    for size in (1, 2, 3, 4):
        keys, prefixes, _ = _raw_walk(cluster, bucket, prefix="run/", delimiter="/", **{"max-keys": str(size)})
        assert (keys, prefixes) == (["run/top"], [f"run/p{i}/" for i in range(6)]), size
        keys, prefixes, _ = _raw_walk(cluster, bucket, delimiter="/", **{"max-keys": str(size)})
        assert (keys, prefixes) == (["e & f"], ["a&b/", "run/"]), size
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="run/", Delimiter="/",
                                                          PaginationConfig={"PageSize": 4})
    got = [(len(p.get("CommonPrefixes", [])), len(p.get("Contents", []))) for p in pages]
    assert got == [(4, 0), (2, 1)]


def test_writes_between_pages_show_in_the_next_page(cluster, bucket):
    """The page after the first is read ahead while the client is busy: a PUT, an
    overwrite and a DELETE made in between must show in it all the same."""
    s3 = cluster.client()
    keys = [f"w/{i:02d}" for i in range(8)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=payload(16, seed=key))
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=3)
    assert [o["Key"] for o in first["Contents"]] == keys[:3]
    s3.put_object(Bucket=bucket, Key="w/02.5", Body=payload(16, seed="new"))
    changed = payload(100, seed="changed")
    s3.put_object(Bucket=bucket, Key="w/04", Body=changed)
    s3.delete_object(Bucket=bucket, Key="w/03")
    second = s3.list_objects_v2(Bucket=bucket, MaxKeys=3, ContinuationToken=first["NextContinuationToken"])
    assert [(o["Key"], o["Size"]) for o in second["Contents"]] == [("w/02.5", 16), ("w/04", len(changed)), ("w/05", 16)]
    third = s3.list_objects_v2(Bucket=bucket, MaxKeys=3, ContinuationToken=second["NextContinuationToken"])
    assert [o["Key"] for o in third["Contents"]] == keys[6:] and not third["IsTruncated"]
