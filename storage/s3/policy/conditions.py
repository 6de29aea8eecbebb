"""The Condition block of a policy statement: operators, their qualifiers, one test each.

An operator compares the request's value of a condition key (from the context that
access.py builds once per request) with the statement's values. Supported: the
String*, Numeric*, Date*, Bool, IpAddress/NotIpAddress and Null operators, each with
`...IfExists`, and the `ForAnyValue:`/`ForAllValues:` set qualifiers. An operator Pocket
does not know makes the policy malformed at PUT time, so a statement is never silently
weaker than its author meant.
"""
from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timezone


class ConditionError(ValueError):
    """A condition block S3 would refuse (MalformedPolicy)."""


def _like(pattern: str, value: str) -> bool:
    """`*` and `?` wildcards by the two-pointer walk: at worst len(pattern) x len(value)
    steps, where a regex of many `.*` backtracks exponentially on a long key."""
    p = v = 0
    star, mark = -1, 0
    while v < len(value):
        if p < len(pattern) and pattern[p] in ("?", value[v]) and pattern[p] != "*":
            p, v = p + 1, v + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, v, p + 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            v = mark
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def _number(text) -> float:
    return float(text)


def _date(text) -> float:
    text = str(text)
    if re.fullmatch(r"\d+", text):
        return float(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def _network(text) -> ipaddress._BaseNetwork:
    return ipaddress.ip_network(str(text), strict=False)


def _in_network(value: str, net) -> bool:
    try:
        return ipaddress.ip_address(value) in net
    except ValueError:
        return False


def _bool(text) -> str:
    return str(text).lower()


# operator -> (parse a policy value, test(request value, parsed policy value))
_OPERATORS = {
    "StringEquals": (str, lambda v, p: v == p),
    "StringNotEquals": (str, lambda v, p: v != p),
    "StringEqualsIgnoreCase": (str, lambda v, p: v.lower() == p.lower()),
    "StringNotEqualsIgnoreCase": (str, lambda v, p: v.lower() != p.lower()),
    "StringLike": (str, lambda v, p: _like(p, v)),
    "StringNotLike": (str, lambda v, p: not _like(p, v)),
    "NumericEquals": (_number, lambda v, p: _number(v) == p),
    "NumericNotEquals": (_number, lambda v, p: _number(v) != p),
    "NumericLessThan": (_number, lambda v, p: _number(v) < p),
    "NumericLessThanEquals": (_number, lambda v, p: _number(v) <= p),
    "NumericGreaterThan": (_number, lambda v, p: _number(v) > p),
    "NumericGreaterThanEquals": (_number, lambda v, p: _number(v) >= p),
    "DateEquals": (_date, lambda v, p: _date(v) == p),
    "DateNotEquals": (_date, lambda v, p: _date(v) != p),
    "DateLessThan": (_date, lambda v, p: _date(v) < p),
    "DateLessThanEquals": (_date, lambda v, p: _date(v) <= p),
    "DateGreaterThan": (_date, lambda v, p: _date(v) > p),
    "DateGreaterThanEquals": (_date, lambda v, p: _date(v) >= p),
    "Bool": (_bool, lambda v, p: _bool(v) == p),
    "IpAddress": (_network, _in_network),
    "NotIpAddress": (_network, lambda v, p: not _in_network(v, p)),
}
# Negated operators hold when any one of several policy values fails to match: AWS ANDs them.
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NumericNotEquals", "DateNotEquals",
            "NotIpAddress"}


def _split(operator: str) -> tuple[str | None, str, bool]:
    qualifier, _, name = operator.rpartition(":")
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise ConditionError(f"unknown condition qualifier {qualifier}")
    if_exists = name.endswith("IfExists") and name != "IfExists"
    base = name[:-len("IfExists")] if if_exists else name
    if base not in _OPERATORS and base != "Null":
        raise ConditionError(f"unknown condition operator {name}")
    return qualifier or None, base, if_exists


def validate(block) -> dict:
    """A Condition block in canonical form: {operator: {key: [values]}}; ConditionError if malformed."""
    if not isinstance(block, dict):
        raise ConditionError("Condition must be an object")
    canonical = {}
    for operator, tests in block.items():
        _qualifier, base, _ = _split(operator)
        if not isinstance(tests, dict) or not tests:
            raise ConditionError(f"{operator} must map condition keys to values")
        canonical[operator] = {}
        for key, values in tests.items():
            values = values if isinstance(values, list) else [values]
            if not values or any(isinstance(v, (dict, list)) or v is None for v in values):
                raise ConditionError(f"{operator} {key}: values must be strings, numbers or booleans")
            try:
                for v in values:
                    if base == "Null":
                        _bool(v)
                    else:
                        _OPERATORS[base][0](v if base == "Bool" or not isinstance(v, bool) else str(v).lower())
            except ValueError as e:
                raise ConditionError(f"{operator} {key}: {v!r} is not a valid value ({e})") from None
            canonical[operator][key] = [str(v).lower() if isinstance(v, bool) else v for v in values]
    return canonical


def _lookup(context: dict, key: str):
    """The request's value(s) for a condition key; keys are case-insensitive, tag names are not."""
    name, slash, rest = key.partition("/")
    value = context.get(name.lower() + slash + rest)
    if value is None and not slash:
        value = context.get(key.lower())
    return value


def holds(block: dict, context: dict) -> bool:
    """Whether every test of a (validated) Condition block holds for the request."""
    for operator, tests in block.items():
        qualifier, base, if_exists = _split(operator)
        for key, wanted in tests.items():
            present = _lookup(context, key)
            if base == "Null":
                if (present is None) != (_bool(wanted[0]) == "true"):
                    return False
                continue
            if present is None:  # absent: a negated operator holds, as on AWS; IfExists skips the test
                if if_exists or qualifier == "ForAllValues" or base in _NEGATED:
                    continue
                return False
            parse, test = _OPERATORS[base]
            parsed = [parse(w) for w in wanted]
            values = present if isinstance(present, (list, tuple, set)) else [present]

            def one(v) -> bool:
                try:
                    results = [test(str(v), p) for p in parsed]
                except ValueError:
                    return False
                return all(results) if base in _NEGATED else any(results)
            if qualifier == "ForAllValues":
                ok = all(one(v) for v in values)
            else:
                ok = any(one(v) for v in values) if values else False
            if not ok:
                return False
    return True


def like(pattern: str, value: str) -> bool:
    """IAM wildcard match (`*` any run, `?` one character), also used for actions and resources."""
    return _like(pattern, value)

