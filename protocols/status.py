"""Kubernetes `Status` objects for the responses the gateway makes itself.

kubectl and client-go decode a failure body of `kind: Status` and print its reason and
message (`Error from server (Forbidden): ...`), so every local answer takes this shape.
"""

from __future__ import annotations

import enum
import json
import re


class StatusReason(enum.Enum):
    """A failure the gateway reports, with its HTTP code and `Status.reason` string.

    Reasons are metav1.StatusReason values where Kubernetes has one. Kubernetes has none
    for 414, 421 and 431, so those use the HTTP reason phrase. 502 has none either; client-go
    files any 5xx without a better reason under InternalError (NewGenericServerResponse),
    so BadGateway carries that reason and `apierrors.IsInternalError` holds for it.
    """

    BadRequest = (400, "BadRequest")
    Unauthorized = (401, "Unauthorized")
    Forbidden = (403, "Forbidden")
    NotFound = (404, "NotFound")
    MethodNotAllowed = (405, "MethodNotAllowed")
    NotAcceptable = (406, "NotAcceptable")
    Conflict = (409, "Conflict")
    RequestEntityTooLarge = (413, "RequestEntityTooLarge")
    URITooLong = (414, "RequestURITooLong")
    MisdirectedRequest = (421, "MisdirectedRequest")
    RequestHeaderFieldsTooLarge = (431, "RequestHeaderFieldsTooLarge")
    InternalError = (500, "InternalError")
    BadGateway = (502, "InternalError")
    ServiceUnavailable = (503, "ServiceUnavailable")
    Timeout = (504, "Timeout")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


def status_body(
    reason: StatusReason, message: str, *, details: dict[str, object] | None = None
) -> bytes:
    """The compact JSON of a failed `Status`; `details` is included only when given.

    Non-ASCII is escaped so that no message (not even one carrying a lone surrogate from
    a hostile request) can make the error path itself fail to encode.
    """
    status: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason.reason,
    }
    if details is not None:
        status["details"] = details
    status["code"] = reason.code
    return json.dumps(status, separators=(",", ":")).encode("ascii")


# RFC 9110 field-value: visible ASCII, inner spaces allowed, no surrounding whitespace.
_FIELD_VALUE = re.compile(r"[!-~](?:[ !-~]*[!-~])?")


def status_headers(body: bytes, audit_id: str) -> list[tuple[bytes, bytes]]:
    """Response headers for a `Status` body; every gateway response carries `Audit-Id`.

    Raises ValueError for an `audit_id` that is not a valid header value, rather than
    letting a stray CR/LF split the response.
    """
    if not _FIELD_VALUE.fullmatch(audit_id):
        raise ValueError(f"audit id is not a valid header value: {audit_id!r}")
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"audit-id", audit_id.encode("ascii")),
    ]
