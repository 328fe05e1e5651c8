from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.secret_redaction import (
    LAST_APPLIED,
    REDACTED,
    NotAcceptable,
    Unredactable,
    WatchRedactor,
    redact_body,
    redact_document,
    redacted_accept,
)

keys = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=8)
values = st.binary(min_size=1, max_size=20).map(lambda b: base64.b64encode(b).decode())
secrets = st.builds(
    lambda data, plain, annotations: {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {
            "name": "s",
            "annotations": {**annotations, LAST_APPLIED: json.dumps({"data": data})},
        },
        "data": data,
        "stringData": plain,
        "type": "Opaque",
    },
    st.dictionaries(keys, values, max_size=5),
    st.dictionaries(keys, st.text(min_size=1, max_size=10), max_size=3),
    st.dictionaries(keys, st.text(max_size=10), max_size=3),
)


def _assert_redacted(original: dict[str, Any], redacted: dict[str, Any]) -> None:
    assert redacted["data"] == dict.fromkeys(original["data"], REDACTED)
    assert redacted["stringData"] == dict.fromkeys(original["stringData"], REDACTED)
    annotations = dict(original["metadata"]["annotations"])
    del annotations[LAST_APPLIED]
    assert redacted["metadata"]["annotations"] == annotations


@given(secrets)
def test_a_secret_keeps_its_keys_and_loses_every_value(secret: dict[str, Any]) -> None:
    original = json.loads(json.dumps(secret))
    _assert_redacted(original, json.loads(redact_body(json.dumps(secret).encode())))
    assert base64.b64decode(REDACTED) == b"REDACTED"


@given(st.lists(secrets, max_size=4))
def test_lists_tables_and_watch_events_are_redacted_throughout(items: list[Any]) -> None:
    originals = json.loads(json.dumps(items))
    listed = redact_document({"kind": "SecretList", "items": json.loads(json.dumps(items))})
    table = redact_document(
        {
            "kind": "Table",
            "rows": [{"cells": ["s"], "object": s} for s in json.loads(json.dumps(items))],
        }
    )
    for index, original in enumerate(originals):
        _assert_redacted(original, listed["items"][index])
        _assert_redacted(original, table["rows"][index]["object"])
        event = redact_document({"type": "MODIFIED", "object": json.loads(json.dumps(original))})
        _assert_redacted(original, event["object"])


def test_a_status_passes_unchanged() -> None:
    status = {"kind": "Status", "status": "Failure", "message": "no", "metadata": {}}
    assert redact_document(json.loads(json.dumps(status))) == status


@given(st.lists(secrets, min_size=1, max_size=3), st.data())
def test_a_watch_is_redacted_event_by_event_however_it_is_cut(
    items: list[Any], data: st.DataObject
) -> None:
    stream = b"".join(
        json.dumps({"type": "ADDED", "object": item}).encode() + b"\n" for item in items
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    redactor = WatchRedactor()
    out = b""
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += b"".join(redactor.feed(stream[start:end]))
    out += redactor.end()
    expected = b"".join(redact_body(line) + b"\n" for line in stream.splitlines())
    assert out == expected


def test_a_last_watch_event_without_its_newline_is_redacted_at_the_end() -> None:
    redactor = WatchRedactor()
    event = json.dumps({"type": "ADDED", "object": {"data": {"k": "dg=="}}}).encode()
    assert list(redactor.feed(event)) == []
    assert json.loads(redactor.end())["object"]["data"] == {"k": REDACTED}


def test_what_cannot_be_read_is_refused_not_passed_on() -> None:
    with pytest.raises(Unredactable):
        redact_body(b"\x0a\x00k8s protobuf")
    with pytest.raises(Unredactable):
        list(WatchRedactor(max_event_bytes=10).feed(b'{"type": "ADDED", "object"'))


@pytest.mark.parametrize(
    ("accept", "sent"),
    [
        (None, b"application/json"),
        (b"*/*", b"application/json"),
        (
            b"application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            b"application/json;as=Table;v=v1;g=meta.k8s.io, application/json",
        ),
        (b"application/vnd.kubernetes.protobuf, application/json", b"application/json"),
    ],
)
def test_accept_is_narrowed_to_json(accept: bytes | None, sent: bytes) -> None:
    assert redacted_accept(accept) == sent


@pytest.mark.parametrize("accept", [b"application/vnd.kubernetes.protobuf", b"application/yaml"])
def test_a_client_that_accepts_no_json_is_refused(accept: bytes) -> None:
    with pytest.raises(NotAcceptable, match="only be served as JSON"):
        redacted_accept(accept)
