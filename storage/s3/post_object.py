"""POST object: an HTML form uploads a file straight from a browser into a bucket.

The form is read as it arrives (form.py): fields first, into a bounded buffer; then
the signature and the policy (post_policy.py) decide, before a byte of the file is
stored; then the file streams into the object service like any PUT body, its size held
to the policy's content-length-range while it flows. Who may write into the bucket is
asked of access.py, as for every other write.
"""
from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web
from multidict import CIMultiDict

from . import access, acl, errors, form, post_policy, sse, tagging, versioning, xml
from .body import MAX_PUT_BYTES, raw_body, stored_headers
from .digests import BodyDigests
from .names import check_key, content_type, header_text, user_metadata
from .request import S3Request

_STATUSES = {"200": 200, "201": 201, "204": 204}


async def post_object(req: S3Request) -> web.Response:
    boundary = form.boundary_of(req.headers.get("Content-Type", ""))
    length = req.declared_length()
    if length is not None and length > MAX_PUT_BYTES + form.MAX_FIELDS_BYTES:
        raise errors.EntityTooLarge(ProposedSize=str(length), MaxSizeAllowed=str(MAX_PUT_BYTES))
    sent = await form.read_form(raw_body(req), boundary)
    fields = sent.fields
    if sent.file is None:
        raise errors.InvalidArgument("POST requires exactly one file upload per request.",
                                     ArgumentName="file", ArgumentValue="0")
    signed = post_policy.verify(fields, req.gateway.secret_for)
    bucket = req.gateway.buckets.get(req.bucket)
    if bucket is None:
        raise errors.NoSuchBucket(resource=req.bucket, BucketName=req.bucket)
    if not fields.get("key"):
        raise errors.InvalidArgument("Bucket POST must contain a field named 'key'.  If it is specified, please "
                                     "check the order of the fields.", ArgumentName="key", ArgumentValue="")
    key = fields["key"].replace("${filename}", _basename(sent.filename))
    fields["key"] = key
    check_key(key)
    as_headers = _as_headers(fields)
    # the one decision (access.allowed), made for the form's signer (None: an anonymous form)
    # and with its fields as the request's headers: s3:PutObject, WRITE on the bucket's ACL
    access.check(req, "s3:PutObject", bucket, key, caller=signed.access_key, headers=as_headers)
    post_policy.check(fields, req.bucket, signed)
    attrs = _attributes(req, as_headers, fields, bucket, signed.access_key)
    # the form's x-amz-server-side-encryption* fields, else the bucket's default, as a PUT's headers
    sealing = sse.for_new_object(req, bucket, as_headers)
    low, high = signed.min_size, min(signed.max_size if signed.max_size is not None else MAX_PUT_BYTES,
                                     MAX_PUT_BYTES)
    record = await req.gateway.objects.put(req.bucket, key, _sized(sent.file, low, high), length,
                                           BodyDigests(CIMultiDict(), None, None), attrs, sealing=sealing)
    return _answer(req, fields, bucket, key, record, sse.response_headers(req, record, as_headers))


def _basename(filename: str | None) -> str:
    """Browsers send a bare name; old IE sent the whole client path (S3 keeps the last part)."""
    return (filename or "").replace("\\", "/").rsplit("/", 1)[-1]


def _as_headers(fields: CIMultiDict) -> CIMultiDict:
    """The form's fields as the headers a PutObject would carry: the `acl` field is what a PUT
    says in x-amz-acl (a field named x-amz-acl is not)."""
    as_headers = CIMultiDict((name, value) for name, value in fields.items()
                             if name.lower() not in ("acl", "x-amz-acl"))
    if "acl" in fields:
        as_headers["x-amz-acl"] = fields["acl"]
    return as_headers


def _attributes(req: S3Request, as_headers: CIMultiDict, fields: CIMultiDict, bucket: dict,
                signer: str | None) -> dict:
    """The new version's record fields, from the form as PutObject takes them from headers."""
    attrs = {
        "content_type": content_type(as_headers),
        "meta": user_metadata(as_headers),
        "headers": stored_headers(as_headers),
        **acl.new_object(req, bucket, as_headers, signer or ""),
        **versioning.new_version_fields(bucket),
    }
    if fields.get("tagging"):
        tags = tagging.validate(tagging.pairs_from_xml(fields["tagging"].encode()))
        if tags:
            attrs["tags"] = tags
    return attrs


async def _sized(file, low: int, high: int):
    """The file's bytes, cut off as soon as they pass `high`; too few at the end refuses it too."""
    size = 0
    async for piece in file:
        size += len(piece)
        if size > high:
            raise errors.EntityTooLarge(f"Your proposed upload exceeds the maximum allowed size ({high} bytes).",
                                        ProposedSize=str(size), MaxSizeAllowed=str(high))
        yield piece
    if size < low:
        raise errors.EntityTooSmall(f"Your proposed upload is smaller than the minimum allowed size ({low} "
                                    "bytes).", ProposedSize=str(size), MinSizeAllowed=str(low))


def _answer(req: S3Request, fields: CIMultiDict, bucket: dict, key: str, record: dict,
            sealed: dict[str, str]) -> web.Response:
    etag = f'"{record["etag"]}"'
    location = f"{req.http.scheme}://{req.http.host}/{quote(req.bucket)}/{quote(key)}"
    headers = {"ETag": etag, "Location": location, **versioning.version_headers(bucket, record), **sealed}
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and urlsplit(redirect).scheme in ("http", "https"):
        sep = "&" if urlsplit(redirect).query else ("" if redirect.endswith("?") else "?")
        target = redirect + sep + urlencode({"bucket": req.bucket, "key": key, "etag": etag})
        headers["Location"] = header_text("success_action_redirect", target)
        return web.Response(status=303, headers=headers)
    status = _STATUSES.get(fields.get("success_action_status", ""), 204)
    if status != 201:
        return web.Response(status=status, headers=headers)
    # without the S3 namespace, as S3 sends it: a browser page's script reads <Key>, not {ns}Key
    body = xml.document(xml.element("PostResponse", [("Location", location), ("Bucket", req.bucket),
                                                     ("Key", key), ("ETag", etag)]), namespace=None)
    return web.Response(status=201, body=body, headers=headers, content_type="application/xml")
