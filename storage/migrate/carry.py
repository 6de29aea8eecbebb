"""How `enable` turns the source bucket's tags, policy and default encryption into Pocket's.

Each converter takes the document the source serves and returns the value for Pocket's
bucket record (None: nothing to carry), appending to `notes` what it left behind and why,
so the operator can apply the equivalent by hand. The documents are checked by the same
code that checks a client's Put request: what is carried, a client could have set.

The policy is the delicate one. Pocket's users are its access keys (policy/document.py),
so a statement naming an AWS account, IAM user or role, a canonical user id, a service or
a federated identity names nobody in Pocket. Such statements are dropped and listed:
an Allow for nobody grants nothing, a Deny for nobody refuses nothing, so the carried
policy means what the source's does for everyone Pocket knows ("*"). A NotPrincipal
statement is the exception: "everyone but X" would become "everyone", so a policy holding
one with unmappable principals is not carried at all. Resources naming the source bucket's
ARN are rewritten to the Pocket bucket's when `--target` renames it.
"""
from __future__ import annotations

import json

from ..crypto.keys import KeyUnavailable
from ..s3 import bucket_encryption, tagging
from ..s3.bucket_tagging import MAX_BUCKET_TAGS
from ..s3.policy import document

_ARN = "arn:aws:s3:::"


def tags(body: bytes, notes: list[str]) -> dict | None:
    return tagging.validate(tagging.pairs_from_xml(body), max_tags=MAX_BUCKET_TAGS) or None


def encryption(body: bytes, notes: list[str], keys) -> dict | None:
    """The default encryption, when Pocket holds the key it names (its master key for
    SSE-S3, a configured KMS key for SSE-KMS); otherwise reported, not half-applied."""
    config = bucket_encryption.parse(body)
    try:
        keys.kms_key_name(config.get("kms_key_id", ""))
    except KeyUnavailable as e:
        what = f"SSE-KMS with key {config['kms_key_id']}" if config.get("kms_key_id") else "SSE-S3"
        notes.append(f"default encryption ({what}): not carried, {e}; configure the key, then "
                     f"PutBucketEncryption")
        return None
    return config


def _mappable(principal) -> bool:
    return principal == "*" or principal == {"AWS": "*"} or principal == {"AWS": ["*"]}


def _rename(resources, source: str, target: str):
    def one(r: str) -> str:
        name, slash, rest = r[len(_ARN):].partition("/") if r.startswith(_ARN) else ("", "", "")
        return f"{_ARN}{target}{slash}{rest}" if name == source else r
    return [one(r) for r in resources] if isinstance(resources, list) else one(resources)


def policy(body: bytes, notes: list[str], source: str, target: str) -> str | None:
    """The policy text for the Pocket bucket (see the module docstring), or None."""
    document.parse(body, source)      # MalformedPolicy: the source's own policy is not one Pocket reads
    doc = json.loads(body)
    statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    kept, dropped = [], []
    for s in statements:
        if "NotPrincipal" in s and not _mappable(s["NotPrincipal"]):
            notes.append(f"bucket policy: not carried; statement {s.get('Sid') or statements.index(s) + 1} "
                         f"uses NotPrincipal {json.dumps(s['NotPrincipal'])}, which names no Pocket user, so "
                         f"it would apply to everyone; write the policy for Pocket's access keys by hand")
            return None
        if "Principal" in s and not _mappable(s["Principal"]):
            dropped.append(s)
            continue
        s = dict(s)
        for field in ("Resource", "NotResource"):
            if field in s and source != target:
                s[field] = _rename(s[field], source, target)
        kept.append(s)
    for s in dropped:
        notes.append(f"bucket policy: statement {s.get('Sid') or statements.index(s) + 1} ({s.get('Effect')} "
                     f"for {json.dumps(s['Principal'])}) not carried: those principals are not Pocket users; "
                     f"grant the matching Pocket access keys by hand")
    if not kept:
        return None
    text = json.dumps({**doc, "Statement": kept}) if dropped or source != target else body.decode()
    document.parse(text, target)
    return text
