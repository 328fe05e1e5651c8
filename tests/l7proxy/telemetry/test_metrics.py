"""Metrics: requests counted by connection, verb, decision and status."""

from __future__ import annotations

from l7proxy.telemetry.audit import AuditEvent
from l7proxy.telemetry.metrics import Metrics


def _event(status: int, decision: str = "allow") -> AuditEvent:
    return AuditEvent(
        audit_id="x",
        connection="prod",
        verb="get",
        decision=decision,
        status=status,
        duration_ms=2.0,
    )


def test_each_connection_decision_and_status_is_counted_apart_however_often_seen() -> None:
    metrics = Metrics()
    for event in (_event(200), _event(200), _event(404), _event(403, "deny")):
        metrics.observe(event)
    text = metrics.render()[0].decode()
    assert (
        'l7proxy_requests_total{code="200",connection="prod",decision="allow",verb="get"} 2.0'
        in text
    )
    assert (
        'l7proxy_requests_total{code="404",connection="prod",decision="allow",verb="get"} 1.0'
        in text
    )
    assert (
        'l7proxy_requests_total{code="403",connection="prod",decision="deny",verb="get"} 1.0'
        in text
    )
    assert (
        'l7proxy_request_duration_seconds_count{connection="prod",decision="allow",verb="get"} 3.0'
        in text
    )
