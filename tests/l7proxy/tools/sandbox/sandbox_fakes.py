"""An in-memory `Exchange` for driving `SandboxCluster` without a listener."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from l7proxy.wire.exchange import RequestHead

TOKEN = "sandbox-token"
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FakeClock:
    """Wall-clock time the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class FakeExchange:
    """Feeds a request body in chunks and records the response.

    With `stream`, every sent chunk is also passed on to the test as it is sent (so the
    test sees when); with `gate`, `send` blocks until the gate is set (a slow client)."""

    def __init__(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        stream: trio.MemorySendChannel[bytes] | None = None,
        gate: trio.Event | None = None,
    ) -> None:
        self.head = RequestHead(method, target, tuple(headers), "2")
        self.client_addr = "127.0.0.1:50000"
        self.server_name = ""
        self._body = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        self.has_body = bool(body)
        self.response_started = False
        self._stream = stream
        self._gate = gate
        self.status: int | None = None
        self.response_headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.finished = False

    async def receive(self) -> bytes:
        await trio.lowlevel.checkpoint()
        return self._body.pop(0) if self._body else b""

    async def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        assert not self.response_started, "response started twice"
        self.response_started = True
        self.status = status
        self.response_headers = dict(headers)

    async def send(self, data: bytes) -> None:
        assert self.status is not None and not self.finished
        if self._gate is not None:
            await self._gate.wait()
        self.chunks.append(data)
        if self._stream is not None:
            await self._stream.send(data)

    async def finish(self) -> None:
        assert self.status is not None and not self.finished
        self.finished = True
        if self._stream is not None:
            await self._stream.aclose()

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.body.splitlines()]


Call = Callable[..., Awaitable[FakeExchange]]


def auth_headers(token: str | None = TOKEN, **extra: str) -> list[tuple[bytes, bytes]]:
    headers = [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return headers
