"""MCP's Streamable HTTP transport, sans-I/O: JSON-RPC 2.0 messages and the HTTP rules
around them (MCP specification revision 2025-11-25, "Basic" and "Transports").

One POST body is one JSON-RPC message (batches were removed in 2025-06-18). A request is
answered with `application/json` or a `text/event-stream` whose events carry messages, the
response last; a notification or a response is answered `202 Accepted`. Ids are strings or
integers, never null. Everything here is bytes in, values out; the endpoint does the I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

LATEST_VERSION: Final = "2025-11-25"
# Revisions whose messages this endpoint speaks, newest first (all use `initialize`).
SUPPORTED_VERSIONS: Final = (LATEST_VERSION, "2025-06-18", "2025-03-26")
# The revision to assume when a request carries no MCP-Protocol-Version (transport §2.7).
DEFAULT_VERSION: Final = "2025-03-26"

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

JSON: Final = b"application/json"
EVENT_STREAM: Final = b"text/event-stream"

RequestId = str | int


@dataclass(frozen=True, slots=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    """A client's answer to a server request (a result or an error); this server sends
    none, so it only acknowledges them."""

    id: RequestId


Message = Request | Notification | Response


class MessageError(ValueError):
    """A body that is not one valid JSON-RPC message; `code` is the JSON-RPC error code and
    `id` the request's id when it could be read."""

    def __init__(self, code: int, message: str, id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id


def _id(value: object) -> RequestId | None:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def parse_message(body: bytes) -> Message:
    """One JSON-RPC 2.0 message from a POST body, or `MessageError`."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(PARSE_ERROR, f"the body is not JSON: {exc}") from exc
    if isinstance(document, list):
        raise MessageError(INVALID_REQUEST, "batches are not supported: send one message")
    if not isinstance(document, dict):
        raise MessageError(INVALID_REQUEST, "a JSON-RPC message is an object")
    message_id = _id(document.get("id"))
    if document.get("jsonrpc") != "2.0":
        raise MessageError(INVALID_REQUEST, 'a JSON-RPC message has "jsonrpc": "2.0"', message_id)
    if "id" in document and message_id is None:
        raise MessageError(INVALID_REQUEST, "an id is a string or an integer")
    method = document.get("method")
    if method is None:
        if message_id is None or ("result" in document) == ("error" in document):
            raise MessageError(INVALID_REQUEST, "a response has an id and a result or an error")
        return Response(message_id)
    if not isinstance(method, str) or not method:
        raise MessageError(INVALID_REQUEST, "the method is a non-empty string", message_id)
    params = document.get("params", {})
    if not isinstance(params, dict):
        raise MessageError(INVALID_PARAMS, "params is an object", message_id)
    if message_id is None:
        return Notification(method, params)
    return Request(message_id, method, params)


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def result_message(request_id: RequestId, result: dict[str, Any]) -> bytes:
    return _encode({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_message(request_id: RequestId | None, code: int, message: str) -> bytes:
    return _encode(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    )


def notification_message(method: str, params: dict[str, Any]) -> bytes:
    return _encode({"jsonrpc": "2.0", "method": method, "params": params})


def sse_event(data: bytes) -> bytes:
    """One server-sent event carrying one message (its JSON has no newline)."""
    return b"event: message\ndata: " + data + b"\n\n"


@dataclass(frozen=True, slots=True)
class Accepts:
    json: bool
    event_stream: bool


def parse_accept(accept: bytes | None) -> Accepts:
    """Which of the two response types an `Accept` header admits (wildcards count)."""
    types = {part.split(b";", 1)[0].strip().lower() for part in (accept or b"").split(b",") if part}
    anything = b"*/*" in types
    return Accepts(
        json=anything or JSON in types or b"application/*" in types,
        event_stream=anything or EVENT_STREAM in types or b"text/*" in types,
    )


def negotiate_version(requested: object) -> str:
    """The revision to answer `initialize` with: the client's when spoken here, else the
    latest (the client then decides whether to go on)."""
    return (
        requested
        if isinstance(requested, str) and requested in SUPPORTED_VERSIONS
        else (LATEST_VERSION)
    )
