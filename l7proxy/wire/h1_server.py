"""HTTP/1.1 client connections: h11 driven over a trio stream, one request at a time.

Pipelined requests are answered in order because the next request is parsed only after the
previous response has finished. One reader task owns the socket for the whole connection and
hands chunks over a rendezvous channel, so a response that streams for hours can still
notice, at once, that the client went away — without ever cancelling a TLS read midway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Final

import h11
import trio

from l7proxy.config.settings import Limits
from l7proxy.wire.exchange import (
    ClientDisconnected,
    RequestHead,
    UpgradedStream,
    UpgradeNotPossible,
)
from l7proxy.wire.quiet_lock import QuietLock
from protocols.framing import framing_problem
from protocols.headers import upgrade_token
from protocols.status import StatusReason, status_body

_READ_SIZE: Final = 64 * 1024
# Output held back to leave with the rest of a response of known length.
_HOLD_LIMIT: Final = 64 * 1024


Handler = Callable[["H1Exchange"], Awaitable[None]]
# Answers a request that never reached the pipeline (malformed, too large, too slow).
Refuse = Callable[["H1ServerConnection", StatusReason, str], Awaitable[None]]


def without_quotes(exc: h11.RemoteProtocolError) -> str:
    """h11's message for `exc` without the bytes it quotes (`illegal header line: b'…'`):
    they are the client's, and a header line or a chunk may carry a token or body."""
    message = str(exc)
    cut = min((i for q in ("bytearray(", "b'", 'b"') if (i := message.find(q)) >= 0), default=-1)
    return message if cut < 0 else message[:cut].rstrip(" :")


def reason_phrase(status: int) -> bytes:
    """RFC 9110's reason phrase for `status` (empty for a code it does not name): clients
    such as `h2load --h1` and the Python kubernetes client show or parse it."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class H1Exchange:
    """One request/response of an HTTP/1.1 connection (implements `Exchange`)."""

    def __init__(self, conn: H1ServerConnection, head: RequestHead, client_addr: str) -> None:
        self.head = head
        self.client_addr = client_addr
        self.server_name = conn.server_name
        self._conn = conn
        self.body_done = trio.Event()
        self.has_body = _has_body(head)
        # h11 yields the EndOfMessage of a body-less request without more bytes.
        if not self.has_body and isinstance(conn.h11.next_event(), h11.EndOfMessage):
            self.body_done.set()
        self.response_started = False
        self._sized = False
        self.finished = False
        self.upgraded = False
        self.watch_scope = trio.CancelScope()  # the close watcher; an upgrade stops it

    async def receive(self) -> bytes:
        if self.body_done.is_set():
            return b""
        h11conn = self._conn.h11
        if h11conn.they_are_waiting_for_100_continue:
            await self._conn.send(
                h11.InformationalResponse(status_code=100, headers=[], reason=reason_phrase(100))
            )
        while True:
            try:
                event = await self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._conn.refuse_body(exc, self.response_started)
                raise ClientDisconnected from exc
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.body_done.set()
                return b""
            else:
                raise ClientDisconnected

    async def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.response_started = True
        # A response of known length is written once, head and body together; a streamed
        # one (a watch, logs -f) has its head written at once.
        self._sized = any(k.lower() == b"content-length" for k, _ in headers)
        await self._conn.send_to_client(
            h11.Response(status_code=status, headers=headers, reason=reason_phrase(status)),
            hold=self._sized,
        )

    async def send(self, data: bytes) -> None:
        if data:
            await self._conn.send_to_client(h11.Data(data=data), hold=self._sized)

    async def finish(self) -> None:
        await self._conn.send_to_client(h11.EndOfMessage())
        self.finished = True

    async def upgrade(self, headers: list[tuple[bytes, bytes]]) -> UpgradedStream:
        """Answer `101 Switching Protocols`; from then on the connection is a byte stream."""
        if not wants_upgrade(self.head) or not self.body_done.is_set():
            raise UpgradeNotPossible("the request did not ask for a protocol upgrade")
        self.watch_scope.cancel()
        self.response_started = True
        await self._conn.send_to_client(
            h11.InformationalResponse(status_code=101, headers=headers, reason=reason_phrase(101))
        )
        self.upgraded = True
        return _UpgradedConnection(self._conn)


class _UpgradedConnection:
    """The client's raw bytes after a 101: what h11 had buffered, then the socket."""

    def __init__(self, conn: H1ServerConnection) -> None:
        self._conn = conn
        self._pending, _ = conn.h11.trailing_data

    async def receive_some(self) -> bytes:
        if self._pending:
            data, self._pending = bytes(self._pending), b""
            return data
        try:
            return await self._conn._chunks.receive()
        except trio.EndOfChannel:
            return b""

    async def send_all(self, data: bytes) -> None:
        try:
            async with self._conn._send_lock:
                await self._conn.transport.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ClientDisconnected from exc


def wants_upgrade(head: RequestHead) -> bool:
    return upgrade_token(head.headers) is not None


def _has_body(head: RequestHead) -> bool:
    """RFC 9112 §6.3: a request has a body if it is chunked or has a non-zero length."""
    if head.header(b"transfer-encoding") is not None:
        return True
    length = head.header(b"content-length")
    return length is not None and length.strip() not in (b"0", b"")


class H1ServerConnection:
    """Serves one HTTP/1.1 connection until either side closes it."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        client_addr: str,
        limits: Limits,
        *,
        server_name: str = "",
        draining: trio.Event | None = None,
    ) -> None:
        self.transport = transport
        # Once set, the connection closes after the response in progress, or at once if idle.
        self.draining = trio.Event() if draining is None else draining
        self.client_addr = client_addr
        self.server_name = server_name
        self.limits = limits
        # h11 bounds the whole head; our own, finer limits (414 and 431) are checked below.
        self.h11 = h11.Connection(
            h11.SERVER,
            max_incomplete_event_size=limits.max_header_bytes + limits.max_url_bytes,
        )
        self._chunks_send, self._chunks = trio.open_memory_channel[bytes](0)
        self._send_lock = QuietLock()
        self._held = bytearray()
        self._refuse: Refuse | None = None
        self._idle_wait: trio.CancelScope | None = None  # while waiting for a request head

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            async with self._send_lock:
                await self.transport.send_all(data)

    async def send_to_client(self, event: h11.Event, *, hold: bool = False) -> None:
        """`send` for an exchange: a broken connection means the client is gone. With
        `hold`, small output waits to leave with what follows (fewer TLS records)."""
        self._held += self.h11.send(event) or b""
        if hold and len(self._held) < _HOLD_LIMIT:
            return
        data, self._held = bytes(self._held), bytearray()
        try:
            async with self._send_lock:
                await self.transport.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ClientDisconnected from exc

    async def _reader(self) -> None:
        """Owns the socket's read side: chunks go to whoever needs them next."""
        async with self._chunks_send:
            while True:
                try:
                    data = await self.transport.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                await self._chunks_send.send(bytes(data))
                if not data:
                    return

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                data = await self._chunks.receive()
            except trio.EndOfChannel:
                data = b""
            self.h11.receive_data(data)

    async def serve(self, handler: Handler, refuse: Refuse) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader)
            nursery.start_soon(self._close_idle_when_draining)
            try:
                await self._serve_requests(handler, refuse)
            finally:
                nursery.cancel_scope.cancel()

    async def _close_idle_when_draining(self) -> None:
        await self.draining.wait()
        if self._idle_wait is not None:
            self._idle_wait.cancel()

    async def _serve_requests(self, handler: Handler, refuse: Refuse) -> None:
        self._refuse = refuse
        first = True
        while True:
            head = await self._read_head(first, refuse)
            if head is None:
                return
            first = False
            exchange = H1Exchange(self, head, self.client_addr)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_for_close, exchange, nursery.cancel_scope)
                try:
                    await handler(exchange)
                except ClientDisconnected:
                    exchange.finished = False  # the connection is not reusable
                nursery.cancel_scope.cancel()
            if exchange.upgraded:
                return  # the handler spliced the connection until it ended
            if not exchange.finished or self.h11.our_state is not h11.DONE:
                return
            if self.h11.their_state is not h11.DONE:
                return  # body left unread: the connection cannot be reused safely
            if self.draining.is_set():
                return
            try:
                self.h11.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_head(self, first: bool, refuse: Refuse) -> RequestHead | None:
        """The next request head, or None when the connection should end quietly."""
        idle = self.limits.header_read_timeout if first else self.limits.idle_timeout
        if not self.h11.trailing_data[0]:
            with trio.move_on_after(idle) as self._idle_wait:
                if self.draining.is_set():
                    return None
                try:
                    data = await self._chunks.receive()
                except trio.EndOfChannel:
                    data = b""
                if not data:
                    return None
                self.h11.receive_data(data)
            self._idle_wait = None
            if not self.h11.trailing_data[0] and self.h11.their_state is h11.IDLE:
                return None  # idle for too long
        with trio.move_on_after(self.limits.header_read_timeout) as head_scope:
            try:
                event = await self.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse_malformed(exc, refuse)
                return None
        if head_scope.cancelled_caught:
            await refuse(self, StatusReason.Timeout, "timed out reading the request head")
            return None
        if not isinstance(event, h11.Request):
            return None
        target = event.target.decode("ascii", "replace")
        if len(event.target) > self.limits.max_url_bytes:
            await refuse(self, StatusReason.URITooLong, "request URL is too long")
            return None
        size = sum(len(k) + len(v) + 4 for k, v in event.headers)
        if size > self.limits.max_header_bytes:
            await refuse(
                self,
                StatusReason.RequestHeaderFieldsTooLarge,
                "request header fields are too large",
            )
            return None
        headers = tuple((bytes(k), bytes(v)) for k, v in event.headers)
        if (problem := framing_problem(headers)) is not None:
            await refuse(self, StatusReason.BadRequest, f"malformed HTTP/1.1 request: {problem}")
            return None
        return RequestHead(event.method.decode("ascii"), target, headers, "1.1")

    async def refuse_body(self, exc: h11.RemoteProtocolError, response_started: bool) -> None:
        """A request body whose framing broke: 400 if we can still answer, then close."""
        if self._refuse is not None and not response_started:
            await self._refuse(
                self, StatusReason.BadRequest, f"malformed request body: {without_quotes(exc)}"
            )

    async def _refuse_malformed(self, exc: h11.RemoteProtocolError, refuse: Refuse) -> None:
        if exc.error_status_hint == 431:
            # h11 keeps the head it could not finish: its first line is the request line.
            line_end = self.h11.trailing_data[0].find(b"\r\n")
            if line_end == -1 or line_end > self.limits.max_url_bytes:
                await refuse(self, StatusReason.URITooLong, "request URL is too long")
            else:
                await refuse(
                    self,
                    StatusReason.RequestHeaderFieldsTooLarge,
                    "request header fields are too large",
                )
        else:
            await refuse(
                self, StatusReason.BadRequest, f"malformed HTTP/1.1 request: {without_quotes(exc)}"
            )

    async def _watch_for_close(self, exchange: H1Exchange, scope: trio.CancelScope) -> None:
        """Once the request body is read, a closed socket cancels the request's handler.

        Bytes of a pipelined next request are kept in h11's buffer (bounded by the head
        limit); past that, reading stops and TCP pushes back on the client."""
        with exchange.watch_scope:
            await self._watch_after_body(exchange, scope)

    async def _watch_after_body(self, exchange: H1Exchange, scope: trio.CancelScope) -> None:
        await exchange.body_done.wait()
        limit = self.limits.max_header_bytes + self.limits.max_url_bytes
        while len(self.h11.trailing_data[0]) < limit:
            try:
                data = await self._chunks.receive()
            except trio.EndOfChannel:
                data = b""
            if not data:
                scope.cancel()
                return
            self.h11.receive_data(data)
        await trio.sleep_forever()

    async def refuse_with_status(self, reason: StatusReason, message: str, audit_id: str) -> None:
        """Answer a request we could not even parse, then the connection closes."""
        body = status_body(reason, message)
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        if self.h11.their_state is h11.IDLE:
            # Nothing parsed yet: h11 needs a request before it can send a response.
            self.h11 = h11.Connection(h11.SERVER)
            self.h11.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            self.h11.next_event()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"audit-id", audit_id.encode()),
            (b"connection", b"close"),
        ]
        try:
            await self.send(
                h11.Response(
                    status_code=reason.code, headers=headers, reason=reason_phrase(reason.code)
                )
            )
            await self.send(h11.Data(data=body))
            await self.send(h11.EndOfMessage())
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            return
