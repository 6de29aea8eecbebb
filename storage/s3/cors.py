"""Bucket CORS: Put/Get/DeleteBucketCors, the OPTIONS preflight, and the headers actual
cross-origin requests get.

Rules are stored in the bucket record as plain dicts (`origins`, `methods`, `headers`,
`expose`, `max_age`, `id`) and, like every bucket change, recorded on the disks first
(objects/buckets.py). Matching follows S3: the first rule whose AllowedOrigin matches
the Origin (one `*` wildcard allowed), whose AllowedMethod names the method, and whose
AllowedHeader patterns cover every requested header (case-insensitive) wins. The
preflight needs no signature; a preflight no rule allows is 403 and changes nothing.
"""
from __future__ import annotations

import re

from aiohttp import web

from ..numbers import MAX_INT32, decimal
from . import bucket_config, errors, xml
from .body import read_small
from .access import owned_bucket
from .names import header_text
from .request import S3Request

MAX_RULES = 100
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
_MAX_BODY = 64 << 10


# --- configuration ---------------------------------------------------------------------------

def parse(body: bytes) -> list[dict]:
    root = xml.parse(body)
    if root is None or root.tag != "CORSConfiguration":
        raise errors.MalformedXML()
    rules = []
    for el in root:
        if el.tag != "CORSRule":
            raise errors.MalformedXML()
        rules.append(_rule(el))
    if not rules or len(rules) > MAX_RULES:
        raise errors.MalformedXML(f"A CORS configuration holds 1 to {MAX_RULES} rules; this one has {len(rules)}.")
    return rules


def _rule(el) -> dict:
    rule = {"origins": [], "methods": [], "headers": [], "expose": []}
    fields = {"AllowedOrigin": "origins", "AllowedMethod": "methods", "AllowedHeader": "headers",
              "ExposeHeader": "expose"}
    for child in el:
        text = (child.text or "").strip()
        if child.tag in fields:   # each goes back out in Access-Control-* response headers
            rule[fields[child.tag]].append(header_text(child.tag, text))
        elif child.tag == "MaxAgeSeconds":
            max_age = decimal(text, MAX_INT32)
            if max_age is None:
                raise errors.MalformedXML(f"MaxAgeSeconds must be an integer from 0 to {MAX_INT32}.")
            rule["max_age"] = max_age
        elif child.tag == "ID":
            if len(text) > 255:
                raise errors.InvalidArgument("A CORS rule ID is at most 255 characters.")
            rule["id"] = text
        else:
            raise errors.MalformedXML()
    if not rule["origins"] or not rule["methods"]:
        raise errors.MalformedXML("Every CORSRule needs at least one AllowedOrigin and one AllowedMethod.")
    for method in rule["methods"]:
        if method not in METHODS:
            raise errors.InvalidRequest(f"Found unsupported HTTP method in CORS config. Unsupported method is "
                                        f"{method}")
    for origin in rule["origins"]:
        if origin.count("*") > 1:
            raise errors.InvalidRequest(f'AllowedOrigin "{origin}" can not have more than one wildcard.')
    for header in rule["headers"]:
        if header.count("*") > 1:
            raise errors.InvalidRequest(f'AllowedHeader "{header}" can not have more than one wildcard.')
    return rule


def render(rules: list[dict]):
    out = []
    for rule in rules:
        children = [("ID", rule["id"])] if "id" in rule else []
        children += [("AllowedHeader", h) for h in rule["headers"]]
        children += [("AllowedMethod", m) for m in rule["methods"]]
        children += [("AllowedOrigin", o) for o in rule["origins"]]
        children += [("ExposeHeader", h) for h in rule["expose"]]
        if "max_age" in rule:
            children.append(("MaxAgeSeconds", rule["max_age"]))
        out.append(xml.element("CORSRule", children))
    return xml.element("CORSConfiguration", out)


async def put_bucket_cors(req: S3Request) -> web.Response:
    owned_bucket(req)
    return await bucket_config.store(req, "cors", parse(await read_small(req, _MAX_BODY)))


async def get_bucket_cors(req: S3Request) -> web.Response:
    return bucket_config.render(req, "cors", errors.NoSuchCORSConfiguration, render)


async def delete_bucket_cors(req: S3Request) -> web.Response:
    return await bucket_config.remove(req, "cors")


# --- matching --------------------------------------------------------------------------------

def _matches(pattern: str, value: str, fold: bool = False) -> bool:
    if fold:
        pattern, value = pattern.lower(), value.lower()
    if "*" not in pattern:
        return pattern == value
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), value, re.S) is not None


def match(rules: list[dict], origin: str, method: str, headers: list[str] = ()) -> dict | None:
    for rule in rules:
        if method not in rule["methods"] or not any(_matches(o, origin) for o in rule["origins"]):
            continue
        if all(any(_matches(p, h, fold=True) for p in rule["headers"]) for h in headers):
            return rule
    return None


def _allow_origin(rule: dict, origin: str, headers: dict) -> None:
    if rule["origins"] == ["*"] or "*" in rule["origins"] and not any(o == origin for o in rule["origins"]):
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"


async def preflight(http: web.Request, gateway, bucket: str) -> web.Response:
    """OPTIONS /bucket[/key]: unauthenticated, answered from the bucket's rules alone."""
    origin = http.headers.get("Origin")
    if not origin:
        raise errors.BadRequest("Insufficient information. Origin request header needed.")
    method = http.headers.get("Access-Control-Request-Method", "")
    if method not in METHODS:
        raise errors.BadRequest("Invalid Access-Control-Request-Method: " + method)
    requested = [h.strip().lower() for h in http.headers.get("Access-Control-Request-Headers", "").split(",")
                 if h.strip()]
    record = gateway.buckets.get(bucket) if bucket else None
    if record is None:
        raise errors.AccessForbidden(resource=f"/{bucket}", Method=method, ResourceType="BUCKET")
    rule = match(record.get("cors") or [], origin, method, requested)
    if rule is None:
        raise errors.AccessForbidden(resource=f"/{bucket}", Method=method, ResourceType="OBJECT")
    headers = {"Access-Control-Allow-Methods": ", ".join(rule["methods"]),
               "Vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"}
    _allow_origin(rule, origin, headers)
    if requested:
        headers["Access-Control-Allow-Headers"] = ", ".join(requested)
    if rule["expose"]:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule["expose"])
    if "max_age" in rule:
        headers["Access-Control-Max-Age"] = str(rule["max_age"])
    return web.Response(headers=headers)


def response_headers(http: web.Request, gateway, bucket: str) -> dict[str, str]:
    """CORS headers for an actual (non-preflight) request from a browser, or {}."""
    origin = http.headers.get("Origin")
    if not origin or not bucket:
        return {}
    record = gateway.buckets.get(bucket)
    rule = match((record or {}).get("cors") or [], origin, http.method)
    if rule is None:
        return {}
    headers = {"Access-Control-Allow-Methods": ", ".join(rule["methods"]), "Vary": "Origin"}
    _allow_origin(rule, origin, headers)
    if rule["expose"]:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule["expose"])
    if "max_age" in rule:
        headers["Access-Control-Max-Age"] = str(rule["max_age"])
    return headers
