"""Accept connections, terminate TLS, choose the codec by ALPN, and hand each request
to one handler written against `Exchange`.

One nursery per client connection; `serve` reports its bound addresses through
`task_status.started` so tests and the demo can `nursery.start` it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable

import structlog
import trio

from l7proxy.config.settings import Limits
from l7proxy.wire.exchange import Exchange
from l7proxy.wire.h1_server import H1ServerConnection
from l7proxy.wire.h2_server import H2Exchange, serve_h2
from l7proxy.wire.tls import TLSStream, no_renegotiation, record_server_name
from protocols.status import StatusReason, status_body, status_headers

log = structlog.get_logger("l7proxy.wire.listener")

# Time allowed for the TLS handshake of a new connection.
TLS_HANDSHAKE_TIMEOUT = 10.0


Handle = Callable[[Exchange], Awaitable[None]]
# Records a request refused before it reached `handle` (answering it when given an
# exchange) and returns the audit id for the response.
Refuse = Callable[[Exchange | None, StatusReason, str], Awaitable[str]]


async def answer_refusal(exchange: Exchange | None, reason: StatusReason, message: str) -> str:
    """The refusal of a server that keeps no audit log (the sandbox cluster)."""
    if exchange is not None:
        body = status_body(reason, message)
        await exchange.start_response(reason.code, status_headers(body, ""))
        await exchange.send(body)
        await exchange.finish()
    return ""


class ListenerControl:
    """Levers on a running `serve`. New connections take `ssl_context` as it is when they
    arrive, so assigning a new one reloads the certificate. Setting `draining` stops
    accepting: HTTP/2 connections get GOAWAY and close once their streams end, HTTP/1.1
    connections close after the response in progress; what is in flight goes on."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self.ssl_context = ssl_context
        self.draining = trio.Event()


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return record_server_name(no_renegotiation(context))


def _peer(sock_stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = sock_stream.socket.getpeername()
    except OSError:
        return ""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


async def serve(
    handle: Handle,
    *,
    refuse: Refuse = answer_refusal,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    limits: Limits,
    reuse_port: bool = False,
    control: ListenerControl | None = None,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `handle` until cancelled; reports the bound (host, port) pairs when listening.
    With `control`, its TLS context is used (not `ssl_context`) and it may drain."""
    control = control or ListenerControl(ssl_context)
    listeners = await _open_listeners(host, port, reuse_port)
    bound = [tuple(lst.socket.getsockname()[:2]) for lst in listeners]
    handler = _ConnectionHandler(handle, refuse, control, limits)
    async with trio.open_nursery() as nursery:
        task_status.started([(str(h), int(p)) for h, p in bound])
        with trio.CancelScope() as accepting:
            nursery.start_soon(_cancel_when_set, control.draining, accepting)
            await trio.serve_listeners(handler, listeners, handler_nursery=nursery)


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _open_listeners(host: str, port: int, reuse_port: bool) -> list[trio.SocketListener]:
    if not reuse_port:
        return await trio.open_tcp_listeners(port, host=host)
    # SO_REUSEPORT lets several worker processes accept on one port.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    await sock.bind((host, port))
    sock.listen(1024)
    return [trio.SocketListener(sock)]


class _ConnectionHandler:
    def __init__(
        self, handle: Handle, refuse: Refuse, control: ListenerControl, limits: Limits
    ) -> None:
        self.handle = handle
        self.refuse = refuse
        self.control = control
        self.limits = limits

    async def __call__(self, tcp: trio.SocketStream) -> None:
        client_addr = _peer(tcp)
        transport: trio.abc.Stream = tcp
        alpn = None
        server_name = ""
        context = self.control.ssl_context
        try:
            if context is not None:
                tls = TLSStream(tcp, context, server_side=True)
                with trio.move_on_after(TLS_HANDSHAKE_TIMEOUT) as scope:
                    await tls.do_handshake()
                if scope.cancelled_caught:
                    await tcp.aclose()
                    return
                alpn = tls.selected_alpn_protocol()
                server_name = tls.server_name()
                transport = tls
            if alpn == "h2":
                failure = await serve_h2(
                    transport,
                    client_addr,
                    self.limits,
                    self.handle,
                    self._refuse_h2,
                    server_name=server_name,
                    draining=self.control.draining,
                )
                if failure is not None:
                    log.debug(
                        "connection ended",
                        client_addr=client_addr,
                        error=failure.error_code.name,
                        reason=failure.reason,
                    )
            else:
                conn = H1ServerConnection(
                    transport,
                    client_addr,
                    self.limits,
                    server_name=server_name,
                    draining=self.control.draining,
                )
                await conn.serve(self.handle, self._refuse_h1)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            log.debug("connection ended", client_addr=client_addr, error=type(exc).__name__)
        except Exception:
            log.exception("connection failed", client_addr=client_addr)
        finally:
            await trio.aclose_forcefully(transport)

    async def _refuse_h1(
        self, conn: H1ServerConnection, reason: StatusReason, message: str
    ) -> None:
        audit_id = await self.refuse(None, reason, message)
        await conn.refuse_with_status(reason, message, audit_id)

    async def _refuse_h2(self, exchange: H2Exchange, reason: StatusReason, message: str) -> None:
        await self.refuse(exchange, reason, message)
