"""Prometheus metrics for `/metrics`, in a registry owned by the gateway (not global).

With several workers (`PROMETHEUS_MULTIPROC_DIR` set by `serve` before this module is
imported), every value also lands in that directory and `render` reports the sum over the
workers alive, whichever of them answers the scrape: counters and histograms add up, the
gauges of open requests and streams sum the live workers, the reload gauges take the
least of them (0 if any worker failed its last reload; the oldest successful reload)."""

from __future__ import annotations

import os
from collections.abc import Container
from contextlib import AbstractContextManager, nullcontext

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from l7proxy.telemetry.audit import AuditEvent

UNKNOWN_CONNECTION = "(unknown)"
OTHER_VERB = "(other)"
# Resource verbs as kube-apiserver resolves them, and the lower-cased methods that are the
# verbs of non-resource requests; "" for a request refused before it was resolved.
REQUEST_VERBS = frozenset(
    {"", "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
    | {"proxy", "post", "put", "head", "options"}
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "l7proxy_requests",
            "Requests by connection, verb, decision and status code.",
            ["connection", "verb", "decision", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "l7proxy_request_duration_seconds",
            "Time from request head to the end of the response (a stream: its whole life).",
            ["connection", "verb", "decision"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.in_flight = Gauge(
            "l7proxy_requests_in_flight",
            "Requests under /k8s/ being answered now, streams included.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.open_streams = Gauge(
            "l7proxy_open_streams",
            "Streams open now: watch, exec, attach, port-forward.",
            ["kind"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.sts_calls = self._counter(
            "l7proxy_sts_calls", "STS AssumeRole calls made for EKS connections.", "connection"
        )
        self.sts_failures = self._counter(
            "l7proxy_sts_call_failures",
            "STS AssumeRole calls that failed (refused, timed out, unreachable).",
            "connection",
        )
        self.token_cache_hits = self._counter(
            "l7proxy_eks_token_cache_hits", "EKS tokens served from the cache.", "connection"
        )
        self.token_cache_misses = self._counter(
            "l7proxy_eks_token_cache_misses",
            "EKS tokens minted because none was cached or the cached one was due.",
            "connection",
        )
        self.jwks_refreshes = self._counter(
            "l7proxy_jwks_refreshes",
            "Fetches of an identity provider's signing keys (JWKS), failed ones included.",
            "provider",
        )
        self.jwks_failures = self._counter(
            "l7proxy_jwks_refresh_failures",
            "Fetches of an identity provider's signing keys that failed.",
            "provider",
        )
        self.reload_successful = Gauge(
            "l7proxy_config_last_reload_successful",
            "Whether the last configuration reload (or the start) succeeded: 1 or 0.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.reload_timestamp = Gauge(
            "l7proxy_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully, in Unix seconds.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        # The children of each (connection, verb, decision, status) seen: `labels()` checks
        # and looks its values up under a lock on every call. Bounded like the metrics
        # themselves (connections x verbs x decisions x status codes).
        self._children: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}

    def _counter(self, name: str, documentation: str, label: str) -> Counter:
        return Counter(name, documentation, [label], registry=self.registry)

    def reloaded(self, *, successful: bool) -> None:
        self.reload_successful.set(1 if successful else 0)
        if successful:
            self.reload_timestamp.set_to_current_time()

    def stream(self, kind: str | None) -> AbstractContextManager[object]:
        """Counted in `l7proxy_open_streams` while it lasts, unless `kind` is None."""
        if kind is None:
            return nullcontext()
        return self.open_streams.labels(kind).track_inprogress()

    # The upstream and identity stages report through these (they cannot import telemetry).
    def sts_call(self, connection: str, *, failed: bool) -> None:
        self.sts_calls.labels(connection).inc()
        if failed:
            self.sts_failures.labels(connection).inc()

    def token_cache(self, connection: str, *, hit: bool) -> None:
        (self.token_cache_hits if hit else self.token_cache_misses).labels(connection).inc()

    def jwks_fetch(self, provider: str, *, failed: bool) -> None:
        self.jwks_refreshes.labels(provider).inc()
        if failed:
            self.jwks_failures.labels(provider).inc()

    def observe(self, event: AuditEvent, connections: Container[str]) -> None:
        """Count one request. A connection name not in `connections` (anyone may ask for
        `/k8s/<anything>/`) and a verb no Kubernetes request has (a non-resource request's
        verb is its method, any token) are counted under one label value each: every
        value seen is a time series kept for good, so clients must not be able to mint them."""
        connection = event.connection
        if connection and connection not in connections:
            connection = UNKNOWN_CONNECTION
        verb = event.verb if event.verb in REQUEST_VERBS else OTHER_VERB
        key = (connection, verb, event.decision, event.status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(connection, verb, event.decision, str(event.status)),
                self.duration.labels(connection, verb, event.decision),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(event.duration_ms / 1000)

    def render(self) -> tuple[bytes, bytes]:
        registry = self.registry
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return (
            prometheus_client.generate_latest(registry),
            prometheus_client.CONTENT_TYPE_LATEST.encode(),
        )
