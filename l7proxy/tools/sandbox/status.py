"""Kubernetes `Status` errors, so kubectl prints the sandbox's failures like a real cluster's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from l7proxy.tools.sandbox.resources import ResourceType

Obj = dict[str, Any]


class ApiError(Exception):
    """A failed request, carried up to the router and answered as a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(rtype: ResourceType) -> str:
    """kube names a resource `plural.group` in messages (`deployments.apps`)."""
    return f"{rtype.name}.{rtype.group}" if rtype.group else rtype.name


def _details(rtype: ResourceType, name: str) -> Obj:
    details: Obj = {"name": name, "kind": rtype.name}
    if rtype.group:
        details["group"] = rtype.group
    return details


def success(rtype: ResourceType, gone: Obj) -> Obj:
    """What kube-apiserver answers a DELETE that removed the object at once."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {**_details(rtype, gone["metadata"]["name"]), "uid": gone["metadata"]["uid"]},
    }


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{_qualified(rtype)} "{name}" not found', _details(rtype, name)
    )


def already_exists(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(rtype)} "{name}" already exists',
        _details(rtype, name),
    )


def conflict(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(rtype)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        _details(rtype, name),
    )


def expired(requested: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


_FIELD_ERRORS = {
    "Required": "Required value",
    "Invalid": "Invalid value",
    "Forbidden": "Forbidden",
    "Duplicate": "Duplicate value",
}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One of kube's field.Error: where, which kind of error (a key of `_FIELD_ERRORS`),
    the offending value as Go prints it (shown for Invalid and Duplicate) and why."""

    field: str
    type: str
    detail: str = ""
    value: str | None = None

    def body(self) -> str:
        text = _FIELD_ERRORS[self.type]
        if self.value is not None and self.type in ("Invalid", "Duplicate"):
            text += f": {self.value}"
        return f"{text}: {self.detail}" if self.detail else text


def invalid(rtype: ResourceType, name: str, *errors: FieldError) -> ApiError:
    """kube's NewInvalid: the message names the kind (`Deployment.apps`), the details carry
    the kind (not the resource, unlike NotFound) and one cause per field error."""
    kind = f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind
    texts = [f"{e.field}: {e.body()}" for e in errors]
    listed = texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
    details: Obj = {"name": name, "kind": rtype.kind}
    if rtype.group:
        details["group"] = rtype.group
    details["causes"] = [
        {"reason": f"FieldValue{e.type}", "message": e.body(), "field": e.field} for e in errors
    ]
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {listed}', details)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def not_acceptable() -> ApiError:
    return ApiError(
        406, "NotAcceptable", "only application/json and meta.k8s.io Tables are served here"
    )


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format: {content_type}",
    )
