"""An audit line is the very text json.dumps makes of the event's fields."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given
from hypothesis import strategies as st

from l7proxy.telemetry.audit import AuditEvent, render_event

_BY_DEFAULT: dict[type, st.SearchStrategy[object]] = {
    str: st.text(),
    int: st.integers(),
    float: st.floats(),  # NaN and the infinities too: json.dumps writes them its own way
    tuple: st.lists(st.text(), max_size=4).map(tuple),
}


@st.composite
def events(draw: st.DrawFn) -> AuditEvent:
    values = {
        field.name: draw(_BY_DEFAULT[type(field.default)])
        for field in dataclasses.fields(AuditEvent)
        if field.name != "audit_id"
    }
    return AuditEvent(audit_id=draw(st.text()), **values)


@given(events())
def test_an_event_renders_byte_for_byte_as_json_dumps_of_its_fields(event: AuditEvent) -> None:
    fields = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in dataclasses.asdict(event).items()
    }
    assert render_event(event) == json.dumps(fields)
