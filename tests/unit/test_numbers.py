"""storage.numbers.decimal: the one parser for numbers that come from the wire."""
import pytest

from storage.numbers import MAX_INT32, MAX_INT64, decimal


@pytest.mark.parametrize("text, value", [("0", 0), ("007", 7), ("123", 123), (b"42", 42),
                                         (str(MAX_INT64), MAX_INT64), ("0" * 50 + "1", 1)])
def test_plain_ascii_decimals(text, value):
    assert decimal(text) == value


@pytest.mark.parametrize("text", ["", None, "²", "٣", "１", "-1", "+1", " 1", "1 ", "1_000", "1e3", "0x10", "1.0",
                                  "\udcb2", b"\xb2", str(MAX_INT64 + 1), "9" * 5000])
def test_everything_else_is_not_a_number(text):
    assert decimal(text) is None


def test_a_bound_of_its_own():
    assert decimal(str(MAX_INT32), MAX_INT32) == MAX_INT32
    assert decimal(str(MAX_INT32 + 1), MAX_INT32) is None
    assert decimal("10001", 10_000) is None
