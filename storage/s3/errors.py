"""S3 errors as classes, rendered to XML in one place.

Handlers raise these; nobody builds error XML by hand (Swift's s3response.py model).
Each class carries the HTTP status and default message AWS documents for its code,
so a client library maps it to the same exception it would get from S3.
"""
from __future__ import annotations

from .xmltext import encodable, escape, references


class S3Error(Exception):
    code = "InternalError"
    status = 500
    message = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None, resource: str = "", **extra: str):
        super().__init__(message or self.message)
        self.text = message or self.message
        self.resource = resource
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_xml(self, request_id: str, resource: str = "") -> bytes:
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>',
            f"<Code>{self.code}</Code>",
            f"<Message>{_text(self.text)}</Message>",
            f"<Resource>{_text(self.resource or resource)}</Resource>",
            f"<RequestId>{request_id}</RequestId>",
        ]
        parts += [f"<{k}>{_text(v)}</{k}>" for k, v in self.extra.items()]
        parts.append("</Error>")
        return references("".join(parts).encode())


def _text(value) -> str:
    """Error details echo what the client sent (keys, header values): any bytes at all."""
    return escape(encodable(str(value)))


def _error(name: str, status: int, message: str) -> type[S3Error]:
    return type(name, (S3Error,), {"code": name, "status": status, "message": message})


AccessDenied = _error("AccessDenied", 403, "Access Denied")
AccessControlListNotSupported = _error("AccessControlListNotSupported", 400, "The bucket does not allow ACLs")
InvalidBucketAclWithObjectOwnership = _error(
    "InvalidBucketAclWithObjectOwnership", 400, "Bucket cannot have ACLs set with ObjectOwnership's "
    "BucketOwnerEnforced setting")
MalformedACLError = _error(
    "MalformedACLError", 400, "The XML you provided was not well-formed or did not validate against our published schema")
MalformedPolicy = _error("MalformedPolicy", 400, "Policies must be valid JSON and the first byte must be '{'")
NoSuchBucketPolicy = _error("NoSuchBucketPolicy", 404, "The bucket policy does not exist")
NoSuchPublicAccessBlockConfiguration = _error(
    "NoSuchPublicAccessBlockConfiguration", 404, "The public access block configuration was not found")
OwnershipControlsNotFoundError = _error(
    "OwnershipControlsNotFoundError", 404, "The bucket ownership controls were not found")
UnresolvableGrantByEmailAddress = _error(
    "UnresolvableGrantByEmailAddress", 400, "The e-mail address you provided does not match any account on record.")
AccessForbidden = _error(  # what S3 answers a CORS preflight no rule allows
    "AccessForbidden", 403,
    "CORSResponse: This CORS request is not allowed. This is usually because the evaluation of Origin, request "
    "method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the "
    "resource's CORS spec.")
AuthorizationHeaderMalformed = _error(
    "AuthorizationHeaderMalformed", 400, "The authorization header is malformed.")
AuthorizationQueryParametersError = _error(
    "AuthorizationQueryParametersError", 400, "Error parsing the X-Amz-Credential parameter.")
BadRequest = _error("BadRequest", 400, "Bad Request")
BadDigest = _error("BadDigest", 400, "The Content-MD5 or checksum you specified did not match what we received.")
BucketAlreadyExists = _error(
    "BucketAlreadyExists", 409,
    "The requested bucket name is not available. Please select a different name and try again.")
BucketAlreadyOwnedByYou = _error(
    "BucketAlreadyOwnedByYou", 409,
    "Your previous request to create the named bucket succeeded and you already own it.")
BucketNotEmpty = _error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty.")
EntityTooLarge = _error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size.")
EntityTooSmall = _error("EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size.")
IncompleteBody = _error(
    "IncompleteBody", 400, "You did not provide the number of bytes specified by the Content-Length HTTP header.")
InsufficientStorage = _error(
    "InsufficientStorage", 507, "Not enough disks have room to store this object; add capacity or free space.")
InternalError = S3Error
InvalidAccessKeyId = _error(
    "InvalidAccessKeyId", 403, "The AWS access key Id you provided does not exist in our records.")
InvalidArgument = _error("InvalidArgument", 400, "Invalid Argument")
InvalidBucketState = _error("InvalidBucketState", 409, "The request is not valid with the current state of the bucket.")
InvalidBucketName = _error("InvalidBucketName", 400, "The specified bucket is not valid.")
InvalidDigest = _error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
InvalidPart = _error(
    "InvalidPart", 400, "One or more of the specified parts could not be found. The part may not have been "
    "uploaded, or the specified entity tag may not match the part's entity tag.")
InvalidPartNumber = _error("InvalidPartNumber", 416, "The requested partnumber is not satisfiable")
InvalidPartOrder = _error(
    "InvalidPartOrder", 400, "The list of parts was not in ascending order. Parts must be ordered by part number.")
InvalidPolicyDocument = _error(
    "InvalidPolicyDocument", 400, "The content of the form does not meet the conditions specified in the policy document.")
InvalidRange = _error("InvalidRange", 416, "The requested range is not satisfiable")
InvalidRequest = _error("InvalidRequest", 400, "Invalid Request")
InvalidTag = _error("InvalidTag", 400, "The tag provided was not a valid tag.")
InvalidTargetBucketForLogging = _error(
    "InvalidTargetBucketForLogging", 400, "The target bucket for logging does not exist, is not owned by you, or "
    "does not have the appropriate grants for the log-delivery group.")
KMSNotFound = _error("KMS.NotFoundException", 400, "The KMS key given does not exist.")
KeyTooLongError = _error("KeyTooLongError", 400, "Your key is too long")
MalformedXML = _error(
    "MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema.")
MalformedTrailerError = _error(
    "MalformedTrailerError", 400,
    "The request contained trailing data that was not well-formed or did not conform to our published schema.")
MalformedPOSTRequest = _error(
    "MalformedPOSTRequest", 400, "The body of your POST request is not well-formed multipart/form-data.")
MaxPostPreDataLengthExceededError = _error(
    "MaxPostPreDataLengthExceededError", 400, "Your POST request fields preceding the upload file were too large.")
MaxMessageLengthExceeded = _error("MaxMessageLengthExceeded", 400, "Your request was too big.")
MetadataTooLarge = _error(
    "MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size.")
MethodNotAllowed = _error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")
MissingContentLength = _error("MissingContentLength", 411, "You must provide the Content-Length HTTP header.")
MissingSecurityHeader = _error("MissingSecurityHeader", 400, "Your request is missing a required header.")
NoSuchCORSConfiguration = _error("NoSuchCORSConfiguration", 404, "The CORS configuration does not exist")
NoSuchLifecycleConfiguration = _error(
    "NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist")
NoSuchBucket = _error("NoSuchBucket", 404, "The specified bucket does not exist.")
NoSuchKey = _error("NoSuchKey", 404, "The specified key does not exist.")
NoSuchObjectLockConfiguration = _error(
    "NoSuchObjectLockConfiguration", 404, "The specified object does not have a ObjectLock configuration")
NoSuchTagSet = _error("NoSuchTagSet", 404, "The TagSet does not exist")
NoSuchUpload = _error("NoSuchUpload", 404, "The specified upload does not exist.")
NoSuchVersion = _error("NoSuchVersion", 404, "The specified version does not exist.")
ObjectLockConfigurationNotFoundError = _error(
    "ObjectLockConfigurationNotFoundError", 404, "Object Lock configuration does not exist for this bucket")
NotImplementedError_ = _error("NotImplemented", 501, "A header or query you provided implies functionality that is not implemented.")
PreconditionFailed = _error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
RequestTimeout = _error(
    "RequestTimeout", 400, "Your socket connection to the server was not read from or written to within the "
    "timeout period. Idle connections will be closed.")
RequestTimeTooSkewed = _error(
    "RequestTimeTooSkewed", 403, "The difference between the request time and the server's time is too large.")
ServerSideEncryptionConfigurationNotFoundError = _error(
    "ServerSideEncryptionConfigurationNotFoundError", 404, "The server side encryption configuration was not found")
ServiceUnavailable = _error(
    "ServiceUnavailable", 503, "Too few disks are reachable to store or read this object right now; retry shortly.")
SignatureDoesNotMatch = _error(
    "SignatureDoesNotMatch", 403,
    "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
SlowDown = _error("SlowDown", 503, "Please reduce your request rate.")
UnexpectedContent = _error("UnexpectedContent", 400, "This request does not support content.")
XAmzContentSHA256Mismatch = _error(
    "XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not match what was computed.")
