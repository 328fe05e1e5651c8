"""`Status` bodies and headers: the shape kubectl decodes and prints."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.status import StatusReason, status_body, status_headers


@pytest.mark.parametrize(
    ("reason", "code", "reason_string"),
    [
        (StatusReason.BadRequest, 400, "BadRequest"),
        (StatusReason.Unauthorized, 401, "Unauthorized"),
        (StatusReason.Forbidden, 403, "Forbidden"),
        (StatusReason.NotFound, 404, "NotFound"),
        (StatusReason.MethodNotAllowed, 405, "MethodNotAllowed"),
        (StatusReason.NotAcceptable, 406, "NotAcceptable"),
        (StatusReason.Conflict, 409, "Conflict"),
        (StatusReason.RequestEntityTooLarge, 413, "RequestEntityTooLarge"),
        (StatusReason.URITooLong, 414, "RequestURITooLong"),
        (StatusReason.RequestHeaderFieldsTooLarge, 431, "RequestHeaderFieldsTooLarge"),
        (StatusReason.InternalError, 500, "InternalError"),
        (StatusReason.BadGateway, 502, "InternalError"),
        (StatusReason.ServiceUnavailable, 503, "ServiceUnavailable"),
        (StatusReason.Timeout, 504, "Timeout"),
    ],
    ids=lambda value: value.name if isinstance(value, StatusReason) else None,
)
def test_reason_code_and_string(reason: StatusReason, code: int, reason_string: str) -> None:
    assert (reason.code, reason.reason) == (code, reason_string)
    assert json.loads(status_body(reason, "m"))["code"] == code


def test_bad_gateway_is_its_own_member() -> None:
    # Sharing InternalError's reason string must not make it an alias of InternalError.
    assert len(StatusReason.__members__) == len(StatusReason) == 15


def test_body_is_compact_and_ordered() -> None:
    assert status_body(StatusReason.Forbidden, "no") == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"no","reason":"Forbidden","code":403}'
    )


def test_details_only_when_given() -> None:
    body = status_body(StatusReason.NotFound, "gone", details={"name": "c1", "kind": "connection"})
    assert body == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"gone","reason":"NotFound","details":{"name":"c1","kind":"connection"},'
        b'"code":404}'
    )
    assert "details" in json.loads(status_body(StatusReason.NotFound, "x", details={}))
    assert "details" not in json.loads(status_body(StatusReason.NotFound, "x"))


@given(st.text())
def test_any_message_round_trips_as_ascii_json(message: str) -> None:
    body = status_body(StatusReason.BadRequest, message)
    assert body.isascii()
    assert json.loads(body)["message"] == message


def test_headers() -> None:
    body = status_body(StatusReason.Unauthorized, "token expired")
    assert status_headers(body, "4f1c-9a") == [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"audit-id", b"4f1c-9a"),
    ]


@pytest.mark.parametrize(
    "audit_id",
    [
        pytest.param("", id="empty"),
        pytest.param("a\r\nset-cookie: x", id="crlf"),
        pytest.param(" a", id="leading-space"),
        pytest.param("a ", id="trailing-space"),
        pytest.param("a\x00", id="nul"),
        pytest.param("\u00e9", id="non-ascii"),
    ],
)
def test_headers_refuse_unsafe_audit_id(audit_id: str) -> None:
    with pytest.raises(ValueError, match="audit id"):
        status_headers(b"{}", audit_id)
