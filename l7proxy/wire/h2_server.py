"""HTTP/2 client connections: each stream becomes an `Exchange` for the handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from l7proxy.config.settings import Limits
from l7proxy.wire.exchange import (
    ClientDisconnected,
    RequestHead,
    UpgradedStream,
    UpgradeNotPossible,
)
from l7proxy.wire.h2_guard import H2Failure
from l7proxy.wire.h2_session import H2Session, H2Stream, StreamClosedError
from protocols.headers import HTTP2_FORBIDDEN
from protocols.status import StatusReason

# Answers a stream whose head the pipeline must not see (too large, too long).
RefuseStream = Callable[["H2Exchange", StatusReason, str], Awaitable[None]]


class H2Exchange:
    """One HTTP/2 stream seen as an `Exchange`."""

    def __init__(
        self, stream: H2Stream, head: RequestHead, client_addr: str, server_name: str = ""
    ) -> None:
        self.head = head
        self.client_addr = client_addr
        self.server_name = server_name
        self.stream = stream
        self.has_body = not stream.bodyless
        self.response_started = False
        self.finished = False

    async def receive(self) -> bytes:
        try:
            return await self.stream.receive()
        except StreamClosedError as exc:
            raise ClientDisconnected from exc

    async def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.response_started = True
        fields = [(b":status", str(status).encode())]
        fields += [(k.lower(), v) for k, v in headers if k.lower() not in HTTP2_FORBIDDEN]
        try:
            await self.stream.send_headers(fields)
        except StreamClosedError as exc:
            raise ClientDisconnected from exc

    async def send(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except StreamClosedError as exc:
            raise ClientDisconnected from exc

    async def finish(self) -> None:
        try:
            await self.stream.end()
        except StreamClosedError as exc:
            raise ClientDisconnected from exc
        self.finished = True

    async def upgrade(self, headers: list[tuple[bytes, bytes]]) -> UpgradedStream:
        # HTTP/2 has no Upgrade (RFC 9113 §8.6); clients such as kubectl use HTTP/1.1 for it.
        raise UpgradeNotPossible("protocol upgrades need HTTP/1.1")


def request_head(stream: H2Stream) -> tuple[RequestHead, int]:
    """The stream's request head (`:authority` becomes `host`) and its encoded size."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    size = 0
    for name, value in stream.headers:
        size += len(name) + len(value) + 32  # RFC 9113 §6.5.2 header list size
        if name.startswith(b":"):
            pseudo[name] = value
        else:
            headers.append((name, value))
    if b":authority" in pseudo and not any(k == b"host" for k, _ in headers):
        headers.insert(0, (b"host", pseudo[b":authority"]))
    head = RequestHead(
        method=pseudo.get(b":method", b"").decode("ascii", "replace"),
        target=pseudo.get(b":path", b"").decode("ascii", "replace"),
        headers=tuple(headers),
        http_version="2",
    )
    return head, size


async def serve_h2(
    transport: trio.abc.Stream,
    client_addr: str,
    limits: Limits,
    handler: Callable[[H2Exchange], Awaitable[None]],
    refuse: RefuseStream,
    *,
    server_name: str = "",
    draining: trio.Event | None = None,
) -> H2Failure | None:
    """Serve the connection until it ends; why the gateway ended it, if it did (a client
    that broke the protocol or a limit, told so by GOAWAY)."""
    session = H2Session(
        transport,
        client_side=False,
        max_concurrent_streams=limits.max_concurrent_streams,
        max_header_bytes=limits.max_header_bytes,
        head_timeout=limits.header_read_timeout,
    )

    async def on_request(stream: H2Stream) -> None:
        head, size = request_head(stream)
        exchange = H2Exchange(stream, head, client_addr, server_name)
        try:
            if size > limits.max_header_bytes:
                await refuse(
                    exchange,
                    StatusReason.RequestHeaderFieldsTooLarge,
                    "request header fields are too large",
                )
            elif len(head.target) > limits.max_url_bytes:
                await refuse(exchange, StatusReason.URITooLong, "request URL is too long")
            else:
                await handler(exchange)
            if not exchange.finished:
                await stream.reset()
        except (StreamClosedError, ClientDisconnected):
            return

    try:
        await session.start()
    except StreamClosedError:
        return None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_close_when_idle, session, limits.idle_timeout)
        if draining is not None:
            nursery.start_soon(_close_when_drained, session, draining)
        await session.run(on_request)
        nursery.cancel_scope.cancel()
    return session.failure


async def _close_when_drained(session: H2Session, draining: trio.Event) -> None:
    """Once the server drains: GOAWAY at once (no new stream), close when the last ends."""
    await draining.wait()
    await session.announce_goaway()
    while session.stream_count and not session.closed:
        await session.streams_changed.wait()
    await session.close()


async def _close_when_idle(session: H2Session, idle_timeout: float) -> None:
    """GOAWAY once no stream has been open for `idle_timeout`; an open stream is never timed
    out. The task wakes when the idle time could be up, not at every stream's start and end."""
    while not session.closed:
        now = trio.current_time()
        if session.stream_count:  # idle, at the earliest, `idle_timeout` after they end
            await trio.sleep_until(now + idle_timeout)
        elif now >= session.idle_since + idle_timeout:
            await session.close()
            return
        else:
            await trio.sleep_until(session.idle_since + idle_timeout)
