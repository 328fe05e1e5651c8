"""Requests the gateway makes on a caller's behalf, through its own request path.

An MCP tool call is ordinary Kubernetes requests; each runs through `Gateway.handle` as an
`InternalExchange` — routed, resolved, authorized, audited and forwarded like kubectl's —
with the caller's already verified identity (`Caller`) in place of a bearer token. The
exchange keeps the response in memory up to a bound, or, after `101`, hands the upgraded
stream to whoever made the request (an exec).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from l7proxy.identity.oidc.authenticator import Authenticated
from l7proxy.wire.exchange import ClientDisconnected, RequestHead, UpgradedStream

# Chunks queued between the gateway and the maker of an upgraded internal request.
_STREAM_BUFFER = 4


@dataclass(frozen=True, slots=True)
class Caller:
    """Who an internal request acts for: the caller's verified token, and the audit id
    of the event it is made for (its own event carries it as `parent_audit_id`)."""

    auth: Authenticated
    parent_audit_id: str


class DuplexStream:
    """One end of an in-memory byte stream pair with bounded queues both ways."""

    def __init__(
        self, send: trio.MemorySendChannel[bytes], receive: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        self._send = send
        self._receive = receive

    async def receive_some(self) -> bytes:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return b""

    async def send_all(self, data: bytes) -> None:
        await self._send.send(data)

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def _duplex_pair() -> tuple[DuplexStream, DuplexStream]:
    a_send, b_receive = trio.open_memory_channel[bytes](_STREAM_BUFFER)
    b_send, a_receive = trio.open_memory_channel[bytes](_STREAM_BUFFER)
    return DuplexStream(a_send, a_receive), DuplexStream(b_send, b_receive)


class InternalExchange:
    """An `Exchange` whose client is the gateway itself. The response body is kept up to
    `max_response_bytes`; past that the exchange stops reading (the gateway sees a client
    that went away, so the cluster's response is released) and `truncated` is set."""

    client_addr = "internal"
    server_name = ""

    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        *,
        max_response_bytes: int,
    ) -> None:
        self.head = RequestHead(method, target, tuple(headers), "1.1")
        self.has_body = bool(body)
        self.response_started = False
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.truncated = False
        self.answered = trio.Event()  # a response head (or a 101) has come
        self.stream: DuplexStream | None = None  # the caller's end, after a 101
        self._request_body = body
        self._limit = max_response_bytes

    async def receive(self) -> bytes:
        body, self._request_body = self._request_body, b""
        return body

    async def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.response_started = True
        self.status, self.response_headers = status, headers
        self.answered.set()

    async def send(self, data: bytes) -> None:
        room = self._limit - len(self.body)
        self.body += data[:room]
        if len(data) > room:
            self.truncated = True
            raise ClientDisconnected("the internal response reached its size bound")

    async def finish(self) -> None:
        self.answered.set()

    async def upgrade(self, headers: list[tuple[bytes, bytes]]) -> UpgradedStream:
        self.response_started = True
        self.status, self.response_headers = 101, headers
        ours, theirs = _duplex_pair()
        self.stream = theirs
        self.answered.set()
        return ours

    def header(self, name: bytes) -> str:
        for key, value in self.response_headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return ""
