"""Leases in the index (storage/index/leases.py), on each backend: one holder at a time."""
from __future__ import annotations

from storage.index import leases


def test_one_holder_until_it_expires_or_is_given_up(make_index):
    ix = make_index()
    take = lambda who, now: ix.write(lambda ops: leases.acquire(ops, "repair", who, now, 30.0))  # noqa: E731
    assert take("gw-a", 1000.0)
    assert not take("gw-b", 1010.0)                  # held by a
    assert take("gw-a", 1020.0)                      # a renews: until 1050
    assert not take("gw-b", 1049.0)
    assert take("gw-b", 1051.0)                      # a stopped renewing: b takes over
    assert not take("gw-a", 1052.0)                  # and a cannot take it back while b renews
    with ix.read() as ops:
        held = leases.holders(ops, ["repair", "lifecycle"])
    assert held["repair"]["holder"] == "gw-b" and held["repair"]["since"] == 1051.0
    assert held["lifecycle"] is None
    ix.write(lambda ops: leases.release(ops, "repair", "gw-a"))   # not a's to give up: no change
    assert not take("gw-a", 1053.0)
    ix.write(lambda ops: leases.release(ops, "repair", "gw-b"))
    assert take("gw-a", 1054.0)                      # given up: taken at once
