"""Requests to a cluster: one pool per connection, HTTP/2 multiplexed when the cluster
offers it by ALPN, pooled HTTP/1.1 connections otherwise.

Errors are mapped here, once, into `UpstreamError` with the kind that decides the
gateway's answer (502 for a failed connection or protocol, 504 for a timeout).

A pooled connection may have died while it sat idle (the cluster restarted, or closed idle
keep-alive connections). One found closed before use is dropped unused; a request that
meets the death anyway is sent once more, elsewhere, only if sending it twice cannot change
anything (`_Replayed`).
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import h2.errors
import h11
import structlog
import trio

from l7proxy.config.settings import Limits
from l7proxy.wire.h2_session import H2Session, H2Stream, StreamClosedError, plain_headers
from l7proxy.wire.tls import TLSStream, no_renegotiation

Headers = list[tuple[bytes, bytes]]
_T = TypeVar("_T")
_READ_SIZE = 64 * 1024
# Idle HTTP/1.1 connections kept per cluster.
MAX_IDLE_H1 = 32
# Requests sent once more when the reused connection they went on fails before any byte of the
# answer: the safe methods (RFC 9110 §9.2.1) without a body. PUT and DELETE are idempotent
# by RFC 9110 §9.2.2, but not to a Kubernetes caller: a DELETE that reached the cluster
# and is replayed answers 404 for an object it did delete, a PUT answers 409 for its own
# resourceVersion, and a deletecollection replayed may remove objects created meanwhile.
REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Methods whose request carries content by definition: HTTP/1.1 says its length even
# when it is empty (RFC 9110 §8.6).
_CONTENT_METHODS = frozenset({"POST", "PUT", "PATCH"})

log = structlog.get_logger("l7proxy.upstream.pool")


class UpstreamFailure(enum.Enum):
    CONNECT = "cannot connect to the cluster"
    TIMEOUT = "the cluster did not answer in time"
    PROTOCOL = "the cluster's response was malformed or cut short"


class UpstreamError(Exception):
    def __init__(self, failure: UpstreamFailure, detail: str) -> None:
        super().__init__(f"{failure.value}: {detail}")
        self.failure = failure
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a cluster listens: scheme is always https; `base_path` prefixes every path."""

    host: str
    port: int
    base_path: str

    @classmethod
    def from_url(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"expected an https:// URL, got {url!r}")
        return cls(parts.hostname, parts.port or 443, parts.path.rstrip("/"))

    @property
    def authority(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == 443 else f"{host}:{self.port}").encode()


class UpstreamRequest(Protocol):
    """One request in flight to a cluster."""

    async def send(self, data: bytes) -> None: ...

    async def end_body(self) -> None: ...

    async def response_head(self) -> tuple[int, Headers]: ...

    async def receive(self) -> bytes:
        """The next response body chunk; b"" at its end."""
        ...

    async def aclose(self) -> None:
        """Release the request: reuse the connection if the exchange completed."""
        ...


class _H2Request:
    def __init__(self, stream: H2Stream) -> None:
        self.stream = stream
        self._done = False

    @property
    def answered(self) -> bool:
        """The cluster sent some of its answer (a response head)."""
        return bool(self.stream.headers)

    async def send(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except StreamClosedError as exc:
            raise UpstreamError(UpstreamFailure.PROTOCOL, "stream reset while sending") from exc

    async def end_body(self) -> None:
        try:
            await self.stream.end()
        except StreamClosedError as exc:
            raise UpstreamError(UpstreamFailure.PROTOCOL, "stream reset while sending") from exc

    async def response_head(self) -> tuple[int, Headers]:
        await self.stream.head_received.wait()
        status = dict(self.stream.headers).get(b":status")
        if self.stream.is_reset or status is None:
            raise UpstreamError(UpstreamFailure.PROTOCOL, "stream reset before a response")
        return int(status), plain_headers(self.stream.headers)

    async def receive(self) -> bytes:
        try:
            data = await self.stream.receive()
        except StreamClosedError as exc:
            raise UpstreamError(UpstreamFailure.PROTOCOL, "response cut short") from exc
        if not data:
            self._done = True
        return data

    async def aclose(self) -> None:
        if not self._done:
            await self.stream.reset(h2.errors.ErrorCodes.CANCEL)
        self.stream.session.forget(self.stream)


class _H1Connection:
    def __init__(self, transport: TLSStream) -> None:
        self.transport = transport
        self.h11 = h11.Connection(h11.CLIENT)
        self.received = 0  # bytes from the cluster, over every request on the connection

    @property
    def dropped(self) -> bool:
        """Between requests: the cluster closed the connection or sent bytes nobody asked
        for (close_notify, EOF, a stray response), so it cannot take a request."""
        pending, closed = self.h11.trailing_data
        return bool(pending) or closed or self.transport.has_unread_input()

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            await self.transport.send_all(data)

    async def next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await self.transport.receive_some(_READ_SIZE)
                self.received += len(data)
                self.h11.receive_data(bytes(data))
                continue
            return event  # type: ignore[return-value]


class _H1Request:
    def __init__(
        self, conn: _H1Connection, release: Callable[[_H1Connection, bool], Awaitable[None]]
    ) -> None:
        self.conn = conn
        self._release = release
        self._done = False
        self._received_before = conn.received
        self.head: tuple[int, Headers] | None = None  # already read (a refused upgrade)

    @property
    def answered(self) -> bool:
        """The cluster sent some of its answer (any byte since this request began)."""
        return self.conn.received > self._received_before

    async def send(self, data: bytes) -> None:
        if data:
            await self._guard(self.conn.send(h11.Data(data=data)))

    async def end_body(self) -> None:
        await self._guard(self.conn.send(h11.EndOfMessage()))

    async def response_head(self) -> tuple[int, Headers]:
        if self.head is not None:
            return self.head
        while True:
            event = await self._guard(self.conn.next_event())
            if isinstance(event, h11.Response):
                return event.status_code, [(bytes(k), bytes(v)) for k, v in event.headers]
            if not isinstance(event, h11.InformationalResponse):
                raise UpstreamError(UpstreamFailure.PROTOCOL, "connection closed before a response")

    async def receive(self) -> bytes:
        while True:
            event = await self._guard(self.conn.next_event())
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
                return b""
            else:
                raise UpstreamError(UpstreamFailure.PROTOCOL, "response cut short")

    async def aclose(self) -> None:
        conn = self.conn
        reusable = (
            self._done and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE
        )
        await self._release(conn, reusable)

    async def _guard(self, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except (
            h11.ProtocolError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            ssl.SSLError,
            OSError,
        ) as exc:
            raise UpstreamError(UpstreamFailure.PROTOCOL, type(exc).__name__) from exc


class _Replayed:
    """A replayable request (`REPLAYABLE_METHODS`, no body) sent on a reused connection:
    if it fails there before any byte of the answer, it is sent once more (`_send_again`)
    and the second answer, or failure, is the one that counts."""

    def __init__(
        self, first: _H1Request | _H2Request, replay: Callable[[], Awaitable[UpstreamRequest]]
    ) -> None:
        self._current: UpstreamRequest = first
        self._first: _H1Request | _H2Request | None = first
        self._replay = replay

    async def send(self, data: bytes) -> None:
        await self._current.send(data)

    async def end_body(self) -> None:
        await self._current.end_body()

    async def response_head(self) -> tuple[int, Headers]:
        first = self._first
        if first is None:
            return await self._current.response_head()
        self._first = None
        try:
            return await first.response_head()
        except UpstreamError as exc:
            if first.answered:
                raise
            log.debug("reused connection to the cluster failed; sending again", error=str(exc))
        await first.aclose()
        self._current = await self._replay()
        return await self._current.response_head()

    async def receive(self) -> bytes:
        return await self._current.receive()

    async def aclose(self) -> None:
        await self._current.aclose()


@dataclass(frozen=True, slots=True)
class Switched:
    """A cluster's `101 Switching Protocols`: its headers and the raw stream after it."""

    headers: Headers
    stream: _SwitchedStream


class _SwitchedStream:
    """The cluster's bytes after a 101: what h11 had buffered, then the socket."""

    def __init__(self, transport: TLSStream, pending: bytes) -> None:
        self.transport = transport
        self._pending = pending

    async def receive_some(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:
            return bytes(await self.transport.receive_some(_READ_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            raise UpstreamError(UpstreamFailure.PROTOCOL, type(exc).__name__) from exc

    async def send_all(self, data: bytes) -> None:
        try:
            await self.transport.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            raise UpstreamError(UpstreamFailure.PROTOCOL, type(exc).__name__) from exc

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.transport)


class UpstreamPool:
    """Connections to one cluster. `nursery` hosts the readers of HTTP/2 sessions."""

    def __init__(
        self, origin: Origin, tls: ClusterTLS, limits: Limits, nursery: trio.Nursery
    ) -> None:
        self.origin = origin
        # Requests offer h2 then HTTP/1.1; protocol upgrades (exec, attach, port-forward)
        # need HTTP/1.1, which a cluster offering h2 would otherwise not choose.
        self.ssl_context = tls.context(("h2", "http/1.1"))
        self.upgrade_ssl_context = tls.context(("http/1.1",))
        self.limits = limits
        self._nursery = nursery
        self._h2: H2Session | None = None
        self._speaks_h2: bool | None = None
        self._idle_h1: list[_H1Connection] = []
        self._connect_lock = trio.Lock()
        self._retired = False
        self._idle_owner = trio.CancelScope()
        nursery.start_soon(self._close_idle_on_exit)

    async def request(
        self, method: str, target: str, headers: Headers, *, has_body: bool
    ) -> UpstreamRequest:
        """Send a request head; the caller then streams the body and reads the response.

        The body is framed by this pool (chunked, or HTTP/2 DATA frames), so `headers`
        carry no framing of their own unless the gateway made the body (`exchange_whole`)."""
        conn = await self._pooled_connection()
        if conn is None:
            conn = await self._in_connect_time(self._new_connection)
            return await self._send_head(conn, method, target, headers, has_body=has_body)
        if has_body or method not in REPLAYABLE_METHODS:
            return await self._send_head(conn, method, target, headers, has_body=has_body)
        replay = partial(self._send_again, method, target, headers)
        try:
            first = await self._send_head(conn, method, target, headers, has_body=False)
        except UpstreamError as exc:
            log.debug("reused connection to the cluster failed; sending again", error=str(exc))
            return await replay()
        return _Replayed(first, replay)

    async def _send_again(self, method: str, target: str, headers: Headers) -> UpstreamRequest:
        """Send a bodyless request that failed: on a new connection, or over HTTP/2 on the
        pool's session if the failure was its stream's alone (a reset, not a lost session)."""
        conn = await self._in_connect_time(self._new_connection)
        return await self._send_head(conn, method, target, headers, has_body=False)

    async def _send_head(
        self,
        conn: H2Session | _H1Connection,
        method: str,
        target: str,
        headers: Headers,
        *,
        has_body: bool,
    ) -> _H1Request | _H2Request:
        path = self.origin.base_path + target
        if isinstance(conn, H2Session):
            fields = [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", self.origin.authority),
                (b":path", path.encode()),
                *headers,
            ]
            try:
                stream = await conn.open_stream(fields, end_stream=not has_body)
            except StreamClosedError as exc:
                raise UpstreamError(UpstreamFailure.CONNECT, "HTTP/2 connection lost") from exc
            return _H2Request(stream)
        fields = [
            (b"host", self.origin.authority),
            *headers,
            *_h1_framing(method, headers, has_body),
        ]
        request = _H1Request(conn, self._release_h1)
        try:
            await request._guard(conn.send(h11.Request(method=method, target=path, headers=fields)))
            if not has_body:
                await request.end_body()
        except BaseException:
            await request.aclose()  # not complete: the connection is closed, not pooled
            raise
        return request

    async def upgrade(
        self, method: str, target: str, headers: Headers
    ) -> Switched | UpstreamRequest:
        """Ask the cluster to switch protocols on a fresh HTTP/1.1 connection (never pooled).

        Returns the switched byte stream on `101`; any other answer comes back as an
        ordinary response for the caller to relay."""
        transport, _ = await self._in_connect_time(partial(self._dial, self.upgrade_ssl_context))
        conn = _H1Connection(transport)
        request = _H1Request(conn, self._release_h1)
        fields = [(b"host", self.origin.authority), *headers]
        path = self.origin.base_path + target
        try:
            await request._guard(conn.send(h11.Request(method=method, target=path, headers=fields)))
            await request.end_body()
            with trio.fail_after(self.limits.upstream_response_timeout):
                event = await request._guard(conn.next_event())
        except trio.TooSlowError as exc:
            await trio.aclose_forcefully(transport)
            raise UpstreamError(UpstreamFailure.TIMEOUT, "no answer to the upgrade") from exc
        except UpstreamError:
            await trio.aclose_forcefully(transport)
            raise
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            pending, _ = conn.h11.trailing_data
            response = [(bytes(k), bytes(v)) for k, v in event.headers]
            return Switched(response, _SwitchedStream(transport, bytes(pending)))
        if isinstance(event, h11.Response):
            request.head = (event.status_code, [(bytes(k), bytes(v)) for k, v in event.headers])
            return request
        await trio.aclose_forcefully(transport)
        raise UpstreamError(UpstreamFailure.PROTOCOL, "unexpected answer to the upgrade")

    async def _pooled_connection(self) -> H2Session | _H1Connection | None:
        """A connection that takes a request now: the HTTP/2 session or an idle HTTP/1.1
        one (most requests; no timer needed). Idle ones the cluster has dropped are closed
        on the way; a closed HTTP/2 session is already gone (`_run_session`)."""
        if self._h2 is not None and self._h2.can_open_stream:
            return self._h2
        while self._speaks_h2 is False and self._idle_h1:
            conn = self._idle_h1.pop()
            if not conn.dropped:
                return conn
            await trio.aclose_forcefully(conn.transport)
        return None

    async def _in_connect_time(self, connect: Callable[[], Awaitable[_T]]) -> _T:
        """`connect()`, or a timeout error after `upstream_connect_timeout`."""
        timeout = self.limits.upstream_connect_timeout
        with trio.move_on_after(timeout):
            return await connect()
        raise UpstreamError(UpstreamFailure.TIMEOUT, f"no connection within {timeout:g}s")

    async def _new_connection(self) -> H2Session | _H1Connection:
        async with self._connect_lock:
            if self._h2 is not None and self._h2.can_open_stream:
                return self._h2
            if self._retired:
                raise UpstreamError(
                    UpstreamFailure.CONNECT, "the connection was replaced by a reload"
                )
            transport, alpn = await self._dial(self.ssl_context)
            if alpn == "h2":
                self._speaks_h2 = True
                session = H2Session(transport, client_side=True)
                await session.start()
                self._h2 = session
                self._nursery.start_soon(self._run_session, session)
                return session
            self._speaks_h2 = False
            return _H1Connection(transport)

    async def _run_session(self, session: H2Session) -> None:
        try:
            await session.run()
        finally:
            if self._h2 is session:
                self._h2 = None
            await trio.aclose_forcefully(session.transport)

    async def _dial(self, context: ssl.SSLContext) -> tuple[TLSStream, str | None]:
        try:
            tcp = await trio.open_tcp_stream(self.origin.host, self.origin.port)
        except OSError as exc:
            raise UpstreamError(
                UpstreamFailure.CONNECT,
                f"{self.origin.host}:{self.origin.port}: {exc.strerror or exc}",
            ) from exc
        tls = TLSStream(tcp, context, server_hostname=self.origin.host)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(tcp)
            raise UpstreamError(UpstreamFailure.CONNECT, str(exc)) from exc
        return tls, tls.selected_alpn_protocol()

    async def _release_h1(self, conn: _H1Connection, reusable: bool) -> None:
        if reusable and not self._retired and len(self._idle_h1) < MAX_IDLE_H1:
            conn.h11.start_next_cycle()
            self._idle_h1.append(conn)
        else:
            await trio.aclose_forcefully(conn.transport)

    async def _close_idle_on_exit(self) -> None:
        """Idle HTTP/1.1 connections end with the nursery that owns the pool, as HTTP/2
        sessions do with their reader task there."""
        try:
            with self._idle_owner:
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):  # each close is forceful: nothing waits
                await self._close_idle_h1()

    async def retire(self) -> None:
        """A reload replaced this pool: idle connections close now, the HTTP/2 session once
        no stream is left on it (requests that took the old configuration may still open
        some), and the pool's task in its nursery ends. No new connection is made."""
        self._retired = True
        self._idle_owner.cancel()
        session = self._h2
        if session is None:
            return
        while session.streams and not session.closed:
            await session.streams_changed.wait()
        await session.close()

    async def _close_idle_h1(self) -> None:
        idle, self._idle_h1 = self._idle_h1, []
        for conn in idle:
            await trio.aclose_forcefully(conn.transport)

    async def aclose(self) -> None:
        if self._h2 is not None:
            await self._h2.close()
        await self._close_idle_h1()


def _h1_framing(method: str, headers: Headers, has_body: bool) -> Headers:
    """The framing fields of an HTTP/1.1 request: a forwarded body is chunked; only a body
    the gateway made itself (`exchange_whole`) comes with its own length."""
    if any(k == b"content-length" for k, _ in headers):
        return []
    if has_body:
        return [(b"transfer-encoding", b"chunked")]
    return [(b"content-length", b"0")] if method in _CONTENT_METHODS else []


async def exchange_whole(
    pool: UpstreamPool,
    method: str,
    target: str,
    headers: Headers,
    body: bytes = b"",
    *,
    limit: int,
) -> tuple[int, bytes]:
    """One small request the gateway makes itself (a probe, a review): the whole answer,
    at most `limit` bytes. The caller bounds the time."""
    if body:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    request = await pool.request(method, target, headers, has_body=bool(body))
    try:
        if body:
            await request.send(body)
            await request.end_body()
        status, _ = await request.response_head()
        answer = b""
        while chunk := await request.receive():
            answer += chunk
            if len(answer) > limit:
                raise UpstreamError(
                    UpstreamFailure.PROTOCOL, f"{method} {target} answered too much"
                )
    finally:
        await request.aclose()
    return status, answer


@dataclass(frozen=True, slots=True)
class ClusterTLS:
    """How to reach a cluster over TLS: its CA and, optionally, a client certificate."""

    cafile: str | None = None
    cadata: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self, alpn: Sequence[str]) -> ssl.SSLContext:
        """A verifying client context offering `alpn`. Raises `ssl.SSLError` or
        `OSError` for an unusable CA or certificate."""
        context = ssl.create_default_context(cafile=self.cafile, cadata=self.cadata)
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(list(alpn))
        return no_renegotiation(context)
