"""A bucket's lifecycle configuration: S3's XML in, stored rules (see storage/lifecycle/rules.py) out, and back.

Validation follows AWS: a body that does not fit the schema is MalformedXML; values the
schema allows but S3 does not (Days <= 0, a Date not at midnight UTC, duplicate or
overlong IDs, more than 1000 rules) are InvalidArgument; combinations S3 refuses are
InvalidRequest. Transitions move objects to another storage class; Pocket has none to
move them to, so a rule asking for one is NotImplemented, and nothing is stored (once
the rule is checked: a bad Transition is the caller's 400, as on S3, not a 501).
"""
from __future__ import annotations

import datetime as dt
import uuid

from ..numbers import MAX_INT32, MAX_INT64, decimal
from . import errors, xml
from .names import header_text

MAX_RULES = 1000
MAX_ID = 255
MAX_NEWER_NONCURRENT = 100
_ACTIONS = ("expiration", "noncurrent", "abort_days")
_TRANSITIONS = ("Transition", "NoncurrentVersionTransition")
TRANSITION_CLASSES = ("GLACIER", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "DEEP_ARCHIVE", "GLACIER_IR")


def parse(body: bytes) -> list[dict]:
    root = xml.parse(body)
    if root is None or root.tag != "LifecycleConfiguration":
        raise errors.MalformedXML()
    rules = []
    for el in root:
        if el.tag != "Rule":
            raise errors.MalformedXML()
        rules.append(_rule(el))
    if not rules:
        raise errors.MalformedXML("A lifecycle configuration needs at least one Rule.")
    if len(rules) > MAX_RULES:
        raise errors.InvalidArgument(f"A lifecycle configuration holds at most {MAX_RULES} rules; this one has "
                                     f"{len(rules)}.", ArgumentName="Rule")
    ids = [r["id"] for r in rules]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise errors.InvalidArgument("Rule ID must be unique. Found same ID for more than one rule",
                                     ArgumentName="ID", ArgumentValue=duplicate)
    return rules


def _only(el, tag: str):
    found = el.findall(tag)
    if len(found) > 1:
        raise errors.MalformedXML(f"{el.tag} has more than one {tag}.")
    return found[0] if found else None


def _number(el, tag: str, minimum: int, action: str, required: bool = True) -> int | None:
    child = _only(el, tag)
    if child is None:
        if required:
            raise errors.MalformedXML(f"{el.tag} needs {tag}.")
        return None
    return _integer(child, minimum, action)


def _integer(el, minimum: int, action: str, maximum: int = MAX_INT32) -> int:
    """S3's schema types these as int (days, counts) or long (sizes): a value past that is
    not an integer to S3, and would overflow dates and the index further down."""
    text = (el.text or "").strip()
    negative = text.startswith("-") and decimal(text[1:], maximum) is not None
    value = -1 if negative else decimal(text, maximum)
    if value is None:
        raise errors.MalformedXML(f"{el.tag} must be an integer from 0 to {maximum}, not {text[:40]!r}.")
    if value < minimum:
        raise errors.InvalidArgument(f"'{el.tag}' for {action} action must be a positive integer"
                                     if minimum == 1 else f"'{el.tag}' must be at least {minimum}",
                                     ArgumentName=el.tag, ArgumentValue=text)
    return value


def _rule(el) -> dict:
    known = {"ID", "Status", "Filter", "Prefix", "Expiration", "NoncurrentVersionExpiration",
             "AbortIncompleteMultipartUpload", "Transition", "NoncurrentVersionTransition"}
    for child in el:
        if child.tag not in known:
            raise errors.MalformedXML(f"Unknown element {child.tag} in a lifecycle Rule.")
    rule_id = (_only(el, "ID").text or "").strip() if _only(el, "ID") is not None else ""
    header_text("ID", rule_id)   # sent back in x-amz-expiration
    if len(rule_id) > MAX_ID:
        raise errors.InvalidArgument(f"ID length should not exceed allowed limit of {MAX_ID}",
                                     ArgumentName="ID", ArgumentValue=rule_id)
    status = _only(el, "Status")
    if status is None or (status.text or "").strip() not in ("Enabled", "Disabled"):
        raise errors.MalformedXML("Every Rule needs a Status of Enabled or Disabled.")
    rule = {"id": rule_id or uuid.uuid4().hex, "status": status.text.strip()}
    legacy, flt = _only(el, "Prefix"), _only(el, "Filter")
    if legacy is not None and flt is not None:
        raise errors.MalformedXML("A Rule has either a Filter or a Prefix, not both.")
    if legacy is not None:
        rule["filter"], rule["legacy_prefix"] = {"prefix": legacy.text or ""}, True
    else:
        rule["filter"] = _filter(flt) if flt is not None else {"prefix": ""}
    transitions = [child for child in el if child.tag in _TRANSITIONS]
    for transition in transitions:
        _transition(transition)
    _actions(el, rule, transitions=bool(transitions))
    if transitions:
        raise errors.NotImplementedError_("Transitions move objects to another storage class; Pocket has one "
                                          "storage class, so lifecycle rules may only expire objects, noncurrent "
                                          "versions and incomplete multipart uploads.")
    return rule


def _transition(el) -> None:
    storage_class = _only(el, "StorageClass")
    if storage_class is None or (storage_class.text or "").strip() not in TRANSITION_CLASSES:
        raise errors.MalformedXML(f"{el.tag} needs a StorageClass, one of {', '.join(TRANSITION_CLASSES)}.")
    if el.tag == "NoncurrentVersionTransition":
        _number(el, "NoncurrentDays", 0, el.tag)
        _number(el, "NewerNoncurrentVersions", 1, el.tag, required=False)
        return
    days, date = _only(el, "Days"), _only(el, "Date")
    if (days is None) == (date is None):
        raise errors.MalformedXML("Transition holds exactly one of Days or Date.")
    if days is not None:
        _integer(days, 0, "Transition")
    else:
        _date(date)


def _filter(el) -> dict:
    children = list(el)
    if len(children) > 1:
        raise errors.MalformedXML("A Filter holds one Prefix, Tag, ObjectSize* or And element.")
    out = {"prefix": "", "tags": {}, "size_gt": None, "size_lt": None}
    if not children:
        return out
    child = children[0]
    parts = list(child) if child.tag == "And" else [child]
    if child.tag == "And" and not parts:
        raise errors.MalformedXML("And needs at least one condition.")
    for part in parts:
        if part.tag == "Prefix" and not out["prefix"]:
            out["prefix"] = part.text or ""
        elif part.tag == "Tag":
            key, value = part.findtext("Key"), part.findtext("Value")
            if key is None or value is None:
                raise errors.MalformedXML("A Tag needs a Key and a Value.")
            if key in out["tags"]:
                raise errors.InvalidArgument("Duplicate Tag Keys are not allowed.", ArgumentName="Tag",
                                             ArgumentValue=key)
            out["tags"][key] = value
        elif part.tag in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
            field = "size_gt" if part.tag == "ObjectSizeGreaterThan" else "size_lt"
            if out[field] is not None:
                raise errors.MalformedXML(f"{part.tag} appears twice.")
            out[field] = _integer(part, 0, "Filter", MAX_INT64)
        else:
            raise errors.MalformedXML(f"Unexpected {part.tag} in a lifecycle Filter.")
    if out["size_gt"] is not None and out["size_lt"] is not None and out["size_gt"] >= out["size_lt"]:
        raise errors.InvalidArgument("ObjectSizeGreaterThan must be less than ObjectSizeLessThan.",
                                     ArgumentName="ObjectSizeGreaterThan", ArgumentValue=str(out["size_gt"]))
    return out


def _actions(el, rule: dict, transitions: bool = False) -> None:
    exp = _only(el, "Expiration")
    if exp is not None:
        rule["expiration"] = _expiration(exp)
    nc = _only(el, "NoncurrentVersionExpiration")
    if nc is not None:
        rule["noncurrent"] = {"days": _number(nc, "NoncurrentDays", 1, "NoncurrentVersionExpiration"),
                              "newer": _number(nc, "NewerNoncurrentVersions", 1, "NoncurrentVersionExpiration",
                                               required=False)}
        if (rule["noncurrent"]["newer"] or 0) > MAX_NEWER_NONCURRENT:
            raise errors.InvalidArgument(f"NewerNoncurrentVersions must be between 1 and {MAX_NEWER_NONCURRENT}.",
                                         ArgumentName="NewerNoncurrentVersions")
    abort = _only(el, "AbortIncompleteMultipartUpload")
    if abort is not None:
        rule["abort_days"] = _number(abort, "DaysAfterInitiation", 1, "AbortIncompleteMultipartUpload")
    if not transitions and not any(a in rule for a in _ACTIONS):
        raise errors.InvalidRequest("At least one action needs to be specified in a rule.")
    f = rule["filter"]
    if "abort_days" in rule and (f.get("tags") or f.get("size_gt") is not None or f.get("size_lt") is not None):
        raise errors.InvalidRequest("AbortIncompleteMultipartUpload cannot be specified with a Tag or ObjectSize "
                                    "filter: an incomplete upload has neither.")
    if (rule.get("expiration") or {}).get("delete_marker") is not None and f.get("tags"):
        raise errors.InvalidRequest("ExpiredObjectDeleteMarker cannot be specified with a Tag filter.")


def _expiration(el) -> dict:
    days, date, marker = _only(el, "Days"), _only(el, "Date"), _only(el, "ExpiredObjectDeleteMarker")
    given = [x for x in (days, date, marker) if x is not None]
    if len(given) != 1:
        raise errors.MalformedXML("Expiration holds exactly one of Days, Date or ExpiredObjectDeleteMarker.")
    if days is not None:
        return {"days": _number(el, "Days", 1, "Expiration")}
    if marker is not None:
        text = (marker.text or "").strip().lower()
        if text not in ("true", "false"):
            raise errors.MalformedXML("ExpiredObjectDeleteMarker must be true or false.")
        return {"delete_marker": text == "true"}
    return _date(date)


def _date(el) -> dict:
    text = (el.text or "").strip()
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidArgument("'Date' must be in ISO 8601 format", ArgumentName="Date",
                                     ArgumentValue=text) from None
    when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    when = when.astimezone(dt.timezone.utc)
    if when.time() != dt.time(0):
        raise errors.InvalidArgument("'Date' must be at midnight GMT", ArgumentName="Date", ArgumentValue=text)
    return {"date": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "at": when.timestamp()}


# --- back to XML ---------------------------------------------------------------------------

def render(rules: list[dict]):
    return xml.element("LifecycleConfiguration", [_render_rule(r) for r in rules])


def _render_rule(rule: dict):
    children = [("ID", rule["id"])]
    f = rule.get("filter") or {}
    if rule.get("legacy_prefix"):
        children.append(("Prefix", f.get("prefix", "")))
    else:
        conditions = ([("Prefix", f["prefix"])] if f.get("prefix") else []) + \
            [xml.element("Tag", [("Key", k), ("Value", v)]) for k, v in (f.get("tags") or {}).items()] + \
            [(tag, f[field]) for tag, field in (("ObjectSizeGreaterThan", "size_gt"),
                                                ("ObjectSizeLessThan", "size_lt")) if f.get(field) is not None]
        if len(conditions) > 1:
            conditions = [xml.element("And", conditions)]
        children.append(xml.element("Filter", conditions or [("Prefix", "")]))
    children.append(("Status", rule["status"]))
    exp = rule.get("expiration")
    if exp:
        inner = [("Days", exp["days"])] if "days" in exp else [("Date", exp["date"])] if "date" in exp else \
            [("ExpiredObjectDeleteMarker", "true" if exp["delete_marker"] else "false")]
        children.append(xml.element("Expiration", inner))
    nc = rule.get("noncurrent")
    if nc:
        children.append(xml.element("NoncurrentVersionExpiration", [
            ("NoncurrentDays", nc["days"]), ("NewerNoncurrentVersions", nc["newer"]) if nc.get("newer") else None]))
    if rule.get("abort_days"):
        children.append(xml.element("AbortIncompleteMultipartUpload", [("DaysAfterInitiation", rule["abort_days"])]))
    return xml.element("Rule", children)
