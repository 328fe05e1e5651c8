"""Metrics: requests counted by connection, verb, decision and status, in a bounded set of
series."""

from __future__ import annotations

from l7proxy.telemetry.audit import AuditEvent
from l7proxy.telemetry.metrics import Metrics


def _event(
    status: int, decision: str = "allow", *, connection: str = "prod", verb: str = "get"
) -> AuditEvent:
    return AuditEvent(
        audit_id="x",
        connection=connection,
        verb=verb,
        decision=decision,
        status=status,
        duration_ms=2.0,
    )


def test_each_connection_decision_and_status_is_counted_apart_however_often_seen() -> None:
    metrics = Metrics()
    for event in (_event(200), _event(200), _event(404), _event(403, "deny")):
        metrics.observe(event, {"prod"})
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


def test_connection_names_and_methods_clients_make_up_add_no_series() -> None:
    metrics = Metrics()
    for n in range(500):  # /k8s/<made-up>/… is refused before authentication
        metrics.observe(_event(404, "error", connection=f"made-up-{n}", verb=""), {"prod"})
        metrics.observe(_event(404, verb=f"x{n}"), {"prod"})  # a non-resource verb: the method
    text = metrics.render()[0].decode()
    series = [line for line in text.splitlines() if line.startswith("l7proxy_requests_total{")]
    assert sorted(series) == [
        'l7proxy_requests_total{code="404",connection="(unknown)",decision="error",verb=""} 500.0',
        'l7proxy_requests_total{code="404",connection="prod",decision="allow",verb="(other)"} '
        "500.0",
    ]
    assert "made-up" not in text
