"""Requests to a cluster: one pool per connection, HTTP/2 multiplexed when the cluster
offers it by ALPN, pooled HTTP/1.1 connections otherwise.

Errors are mapped here, once, into `UpstreamError` with the kind that decides the
gateway's answer (502 for a failed connection or protocol, 504 for a timeout).
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
import trio

from l7proxy.config.settings import Limits
from l7proxy.wire.h2_session import H2Session, H2Stream, StreamClosedError, plain_headers
from l7proxy.wire.tls import TLSStream, no_renegotiation

Headers = list[tuple[bytes, bytes]]
_T = TypeVar("_T")
_READ_SIZE = 64 * 1024
# Idle HTTP/1.1 connections kept per cluster.
MAX_IDLE_H1 = 32


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
    def __init__(self, transport: trio.abc.Stream) -> None:
        self.transport = transport
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            await self.transport.send_all(data)

    async def next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(bytes(await self.transport.receive_some(_READ_SIZE)))
                continue
            return event  # type: ignore[return-value]


class _H1Request:
    def __init__(
        self, conn: _H1Connection, release: Callable[[_H1Connection, bool], Awaitable[None]]
    ) -> None:
        self.conn = conn
        self._release = release
        self._done = False
        self.head: tuple[int, Headers] | None = None  # already read (a refused upgrade)

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


@dataclass(frozen=True, slots=True)
class Switched:
    """A cluster's `101 Switching Protocols`: its headers and the raw stream after it."""

    headers: Headers
    stream: _SwitchedStream


class _SwitchedStream:
    """The cluster's bytes after a 101: what h11 had buffered, then the socket."""

    def __init__(self, transport: trio.abc.Stream, pending: bytes) -> None:
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

    async def request(
        self, method: str, target: str, headers: Headers, *, has_body: bool
    ) -> UpstreamRequest:
        """Send a request head; the caller then streams the body and reads the response."""
        path = self.origin.base_path + target
        conn = self._ready_connection()
        if conn is None:
            conn = await self._in_connect_time(self._new_connection)
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
        fields = [(b"host", self.origin.authority), *headers]
        if has_body and not any(k == b"content-length" for k, _ in headers):
            fields.append((b"transfer-encoding", b"chunked"))
        request = _H1Request(conn, self._release_h1)
        await request._guard(conn.send(h11.Request(method=method, target=path, headers=fields)))
        if not has_body:
            await request.end_body()
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

    def _ready_connection(self) -> H2Session | _H1Connection | None:
        """A connection that takes a request now: the HTTP/2 session or an idle HTTP/1.1
        one (most requests; no timer needed)."""
        if self._h2 is not None and self._h2.can_open_stream:
            return self._h2
        if self._speaks_h2 is False and self._idle_h1:
            return self._idle_h1.pop()
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

    async def _dial(self, context: ssl.SSLContext) -> tuple[trio.abc.Stream, str | None]:
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
        if reusable and len(self._idle_h1) < MAX_IDLE_H1:
            conn.h11.start_next_cycle()
            self._idle_h1.append(conn)
        else:
            await trio.aclose_forcefully(conn.transport)

    async def aclose(self) -> None:
        if self._h2 is not None:
            await self._h2.close()
        for conn in self._idle_h1:
            await trio.aclose_forcefully(conn.transport)
        self._idle_h1.clear()


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
