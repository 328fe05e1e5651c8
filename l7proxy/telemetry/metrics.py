"""Prometheus metrics for `/metrics`, in a registry owned by the gateway (not global)."""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from l7proxy.telemetry.audit import AuditEvent


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "l7proxy_requests",
            "Requests by connection, decision and status code.",
            ["connection", "decision", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "l7proxy_request_duration_seconds",
            "Time from request head to the end of the response.",
            ["connection", "decision"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.in_flight = Gauge(
            "l7proxy_requests_in_flight",
            "Requests under /k8s/ being answered now, streams included.",
            registry=self.registry,
        )

        # The children of each (connection, decision, status) seen: `labels()` checks and
        # looks its values up under a lock on every call. Bounded like the metrics
        # themselves (connections x decisions x status codes).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, event: AuditEvent) -> None:
        key = (event.connection, event.decision, event.status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(event.connection, event.decision, str(event.status)),
                self.duration.labels(event.connection, event.decision),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(event.duration_ms / 1000)

    def render(self) -> tuple[bytes, bytes]:
        return (
            prometheus_client.generate_latest(self.registry),
            prometheus_client.CONTENT_TYPE_LATEST.encode(),
        )
