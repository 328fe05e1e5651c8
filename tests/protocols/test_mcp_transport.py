from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import mcp_transport as rpc
from protocols.mcp_transport import MessageError, Notification, Request, Response

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
ids = st.integers(min_value=-(2**53), max_value=2**53) | st.text(max_size=20)
params = st.dictionaries(st.text(max_size=10), json_values, max_size=4)


@given(st.binary(max_size=200))
def test_any_bytes_parse_to_a_message_or_a_message_error(body: bytes) -> None:
    try:
        rpc.parse_message(body)
    except MessageError as exc:
        assert exc.code in (rpc.PARSE_ERROR, rpc.INVALID_REQUEST, rpc.INVALID_PARAMS)


@given(json_values)
def test_any_json_parses_to_a_message_or_a_message_error(document: Any) -> None:
    try:
        rpc.parse_message(json.dumps(document).encode())
    except MessageError as exc:
        assert exc.code in (rpc.INVALID_REQUEST, rpc.INVALID_PARAMS)


@given(ids, st.text(min_size=1, max_size=20), params)
def test_requests_and_notifications_round_trip(
    message_id: str | int, method: str, arguments: dict[str, Any]
) -> None:
    request = {"jsonrpc": "2.0", "id": message_id, "method": method, "params": arguments}
    assert rpc.parse_message(json.dumps(request).encode()) == Request(message_id, method, arguments)
    del request["id"]
    assert rpc.parse_message(json.dumps(request).encode()) == Notification(method, arguments)


@given(ids, json_values)
def test_results_round_trip_through_an_sse_event(message_id: str | int, value: Any) -> None:
    event = rpc.sse_event(rpc.result_message(message_id, {"value": value}))
    assert event.startswith(b"event: message\ndata: ") and event.count(b"\n\n") == 1
    assert event.endswith(b"\n\n")
    document = json.loads(event.split(b"data: ", 1)[1])
    assert document == {"jsonrpc": "2.0", "id": message_id, "result": {"value": value}}
    assert rpc.parse_message(event.split(b"data: ", 1)[1]) == Response(message_id)


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], rpc.INVALID_REQUEST),  # a batch
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, rpc.INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, rpc.INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, rpc.INVALID_REQUEST),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, rpc.INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1, "method": ""}, rpc.INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}, rpc.INVALID_PARAMS),
        ({"jsonrpc": "2.0", "id": 1}, rpc.INVALID_REQUEST),  # neither result nor error
        ({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {}}, rpc.INVALID_REQUEST),
    ],
)
def test_invalid_messages_are_refused_with_their_code(document: Any, code: int) -> None:
    with pytest.raises(MessageError) as caught:
        rpc.parse_message(json.dumps(document).encode())
    assert caught.value.code == code


def test_a_request_error_keeps_its_id() -> None:
    with pytest.raises(MessageError) as caught:
        rpc.parse_message(b'{"jsonrpc":"2.0","id":"a","method":"x","params":3}')
    assert caught.value.id == "a"


@pytest.mark.parametrize(
    ("accept", "json_ok", "stream_ok"),
    [
        (b"application/json, text/event-stream", True, True),
        (b"application/json;q=0.9", True, False),
        (b"TEXT/EVENT-STREAM", False, True),
        (b"*/*", True, True),
        (b"text/html", False, False),
        (None, False, False),
    ],
)
def test_accept_admits_json_and_event_streams(
    accept: bytes | None, json_ok: bool, stream_ok: bool
) -> None:
    assert rpc.parse_accept(accept) == rpc.Accepts(json_ok, stream_ok)


@given(st.binary(max_size=100))
def test_any_accept_header_parses(accept: bytes) -> None:
    rpc.parse_accept(accept)


def test_version_negotiation_echoes_a_spoken_revision_else_offers_the_latest() -> None:
    assert rpc.negotiate_version("2025-06-18") == "2025-06-18"
    assert rpc.negotiate_version("2024-11-05") == rpc.LATEST_VERSION == "2025-11-25"
    assert rpc.negotiate_version(None) == rpc.LATEST_VERSION
