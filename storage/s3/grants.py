"""ACL grants: who a bucket's or an object's ACL lets do what, and how requests state them.

A stored ACL is either the name of a canned ACL (`"public-read"`: expanded when it is
read, because `bucket-owner-read` and friends depend on who owns what) or a list of
`[kind, who, permission]` grants, kind "id" (a canonical user id, which in Pocket is an
access key: see policy/document.py) or "group" (a group URI). Grants by e-mail address
are resolved to the user's id when they are set, as S3 does; a Pocket credential has an
e-mail address when the config gives it one (`email = ...` under `[[credentials]]`).
"""
from __future__ import annotations

import re

from . import errors, xml

GROUPS = "http://acs.amazonaws.com/groups/"
ALL_USERS, AUTHENTICATED_USERS = GROUPS + "global/AllUsers", GROUPS + "global/AuthenticatedUsers"
LOG_DELIVERY = GROUPS + "s3/LogDelivery"
PUBLIC_GROUPS = {ALL_USERS, AUTHENTICATED_USERS}
PERMISSIONS = ("FULL_CONTROL", "READ", "WRITE", "READ_ACP", "WRITE_ACP")
CANNED = {"private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
          "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write"}
HEADERS = {"x-amz-grant-read": "READ", "x-amz-grant-write": "WRITE", "x-amz-grant-read-acp": "READ_ACP",
           "x-amz-grant-write-acp": "WRITE_ACP", "x-amz-grant-full-control": "FULL_CONTROL"}
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_GRANTEE = re.compile(r'\s*(id|uri|emailAddress)\s*=\s*"?([^",]*)"?\s*(?:,|$)', re.IGNORECASE)


def expand(acl, owner: str, bucket_owner: str) -> list[list[str]]:
    """The grants of a stored ACL (canned name, grant list, or None for private)."""
    if isinstance(acl, list):
        return acl
    grants = [["id", owner, "FULL_CONTROL"]]
    extra = {
        "public-read": [["group", ALL_USERS, "READ"]],
        "public-read-write": [["group", ALL_USERS, "READ"], ["group", ALL_USERS, "WRITE"]],
        "authenticated-read": [["group", AUTHENTICATED_USERS, "READ"]],
        "log-delivery-write": [["group", LOG_DELIVERY, "WRITE"], ["group", LOG_DELIVERY, "READ_ACP"]],
        "bucket-owner-read": [["id", bucket_owner, "READ"]] if bucket_owner != owner else [],
        "bucket-owner-full-control": [["id", bucket_owner, "FULL_CONTROL"]] if bucket_owner != owner else [],
    }.get(acl or "private", [])
    return grants + extra


def permits(grants: list, caller: str | None, permission: str, ignore_public: bool = False) -> bool:
    """Whether a grant gives `caller` (None: anonymous) `permission` (FULL_CONTROL gives all)."""
    for kind, who, granted in grants:
        if granted not in (permission, "FULL_CONTROL"):
            continue
        if kind == "id" and caller is not None and who == caller:
            return True
        if kind == "group" and not ignore_public and (
                who == ALL_USERS or (who == AUTHENTICATED_USERS and caller is not None)):
            return True
    return False


def is_public(grants: list) -> bool:
    return any(kind == "group" and who in PUBLIC_GROUPS for kind, who, _ in grants)


def only_owner(grants: list, bucket_owner: str) -> bool:
    """Whether the grants say what bucket-owner-full-control says, the one ACL S3 still takes with
    ACLs disabled: the bucket owner's FULL_CONTROL, nobody else's anything (an empty list would
    say the owner lost access that ACLs no longer decide)."""
    return (["id", bucket_owner, "FULL_CONTROL"] in grants
            and all(kind == "id" and who == bucket_owner for kind, who, _ in grants))


def _resolve_email(email: str, users) -> str:
    for user in users:
        if getattr(user, "email", "") and user.email.lower() == email.lower():
            return user.access_key
    raise errors.UnresolvableGrantByEmailAddress(
        "The e-mail address you provided does not match any account on record; give the Pocket user an "
        "`email` in the config, or grant by canonical id (its access key).", EmailAddress=email)


def _resolve_id(ident: str, users) -> str:
    """A canonical id is a Pocket user's access key; S3 refuses a grant to an id it does not know."""
    if any(user.access_key == ident for user in users):
        return ident
    raise errors.InvalidArgument("Invalid id", ArgumentName="CanonicalUser/ID", ArgumentValue=ident)


def _group(uri: str) -> list[str]:
    if not uri.startswith(GROUPS) or uri not in (ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY):
        raise errors.InvalidArgument("Invalid group uri", ArgumentName="uri", ArgumentValue=uri)
    return ["group", uri]


def from_grant_headers(headers, users) -> list[list[str]] | None:
    """The grants of x-amz-grant-* headers (`id="..."`, `uri="..."`, `emailAddress="..."`), None if none."""
    found = []
    for name, permission in HEADERS.items():
        for value in headers.getall(name, []) if hasattr(headers, "getall") else [headers.get(name)] * (name in headers):
            pos, value = 0, value.strip()
            while pos < len(value):
                m = _GRANTEE.match(value, pos)
                if m is None or not m.group(2):
                    raise errors.InvalidArgument(f"{name} must list grantees as id=\"...\", uri=\"...\" or "
                                                 "emailAddress=\"...\", separated by commas",
                                                 ArgumentName=name, ArgumentValue=value)
                kind, who = m.group(1).lower(), m.group(2).strip()
                grantee = (["id", _resolve_id(who, users)] if kind == "id" else _group(who) if kind == "uri"
                           else ["id", _resolve_email(who, users)])
                found.append(grantee + [permission])
                pos = m.end()
    return found or None


def from_xml(body: bytes, users) -> tuple[str | None, list[list[str]]]:
    """(owner id named, grants) of an AccessControlPolicy document."""
    root = xml.parse(body)
    if root is None or root.tag != "AccessControlPolicy" or root.find("AccessControlList") is None:
        raise errors.MalformedACLError("The XML you provided was not well-formed or did not validate against "
                                       "our published schema")
    owner = root.find("Owner/ID")
    found = []
    for grant in root.find("AccessControlList"):
        grantee, permission = grant.find("Grantee"), grant.find("Permission")
        if grant.tag != "Grant" or grantee is None or permission is None:
            raise errors.MalformedACLError("Each Grant needs a Grantee and a Permission")
        permission = (permission.text or "").strip()
        if permission not in PERMISSIONS:
            raise errors.MalformedACLError(f"{permission} is not a permission")
        ident, uri, email = (grantee.find(t) for t in ("ID", "URI", "EmailAddress"))
        if ident is not None and (ident.text or "").strip():
            found.append(["id", _resolve_id(ident.text.strip(), users), permission])
        elif uri is not None and (uri.text or "").strip():
            found.append(_group(uri.text.strip()) + [permission])
        elif email is not None and (email.text or "").strip():
            found.append(["id", _resolve_email(email.text.strip(), users), permission])
        else:
            raise errors.MalformedACLError("A Grantee needs an ID, a URI or an EmailAddress")
    return (None if owner is None else (owner.text or "").strip()), found


def document(owner: str, grants: list[list[str]]) -> bytes:
    """The AccessControlPolicy XML S3 answers GetBucketAcl and GetObjectAcl with."""
    owner_el = xml.element("Owner", [("ID", owner), ("DisplayName", owner)])
    items = []
    for kind, who, permission in grants:
        if kind == "id":
            grantee = xml.element("Grantee", [("ID", who), ("DisplayName", who)])
            grantee.set("xsi:type", "CanonicalUser")
        else:
            grantee = xml.element("Grantee", [("URI", who)])
            grantee.set("xsi:type", "Group")
        items.append(xml.element("Grant", [grantee, ("Permission", permission)]))
    root = xml.element("AccessControlPolicy", [owner_el, xml.element("AccessControlList", items)])
    root.set("xmlns:xsi", XSI)
    return xml.document(root)
