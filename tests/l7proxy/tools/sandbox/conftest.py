"""Fixtures: a sandbox cluster on a hand-moved clock, and `call` to send it one request."""

from __future__ import annotations

import json
from typing import Any

import pytest

from l7proxy.tools.sandbox import SandboxCluster
from tests.l7proxy.tools.sandbox.sandbox_fakes import (
    TOKEN,
    Call,
    FakeClock,
    FakeExchange,
    auth_headers,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cluster(clock: FakeClock) -> SandboxCluster:
    return SandboxCluster(tokens={TOKEN: "alice"}, version=(1, 31), clock=clock)


@pytest.fixture
def call(cluster: SandboxCluster) -> Call:
    """`await call(method, target, body=..., content_type=..., accept=..., token=...)`."""

    async def run(
        method: str,
        target: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        accept: str | None = None,
        token: str | None = TOKEN,
    ) -> FakeExchange:
        raw = (
            body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        )
        extra = {"content_type": content_type} if raw and content_type else {}
        if accept is not None:
            extra["accept"] = accept
        exchange = FakeExchange(method, target, auth_headers(token, **extra), raw)
        await cluster.handle(exchange)
        assert exchange.finished
        return exchange

    return run
