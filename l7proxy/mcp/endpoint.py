"""`/mcp/<connection>`: MCP's Streamable HTTP transport on the gateway's listener.

The gateway has authenticated the request (a 401 carries `WWW-Authenticate: Bearer
resource_metadata="…"`) before `serve` runs. Then: the Origin check (DNS rebinding), POST
of one JSON-RPC message — `initialize` opens a session (`Mcp-Session-Id`), notifications
and responses get 202, requests get JSON, or a `text/event-stream` when the client asked
for progress on a `tools/call` (or accepts only that) — GET, for which no server stream is
offered (405), and DELETE, which ends the session.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from l7proxy import __version__
from l7proxy.identity.oidc.authenticator import Authenticated
from l7proxy.mcp.calls import CallContext, call_tool
from l7proxy.mcp.catalog import TOOLS
from l7proxy.mcp.kube import Progress
from l7proxy.mcp.sessions import McpSession, SessionTable
from l7proxy.pipeline.gateway import Gateway
from l7proxy.pipeline.routing import MCP_PREFIX, METADATA_PREFIX
from l7proxy.telemetry.audit import AuditEvent
from l7proxy.wire.exchange import ClientDisconnected, Exchange
from protocols import mcp_transport as rpc
from protocols.mcp_transport import Accepts, MessageError, Notification, Request, Response

# One JSON-RPC message; an apply_manifest's manifest is the largest thing one carries.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
SESSION_HEADER = b"mcp-session-id"
VERSION_HEADER = b"mcp-protocol-version"
_ALLOW = b"POST, DELETE"


class HttpError(Exception):
    """An MCP request refused at the HTTP layer, answered with a JSON-RPC error body."""

    def __init__(
        self, status: int, code: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class McpEndpoint:
    """The gateway's `AgentEndpoint`: MCP for every connection, as each caller."""

    def __init__(self, gateway: Gateway, *, scheme: str) -> None:
        self.gateway = gateway
        self.scheme = scheme
        self.sessions = SessionTable()

    # -- authorization: RFC 9728 -------------------------------------------------------
    def _origin(self, exchange: Exchange) -> str:
        host = (exchange.head.header(b"host") or b"").decode("latin-1")
        return f"{self.scheme}://{host}"

    def resource(self, exchange: Exchange, connection: str) -> str:
        return f"{self._origin(exchange)}{MCP_PREFIX}{connection}"

    def challenge(self, exchange: Exchange, connection: str) -> tuple[tuple[bytes, bytes], ...]:
        url = f"{self._origin(exchange)}{METADATA_PREFIX}{MCP_PREFIX}{connection}"
        return ((b"www-authenticate", f'Bearer resource_metadata="{url}"'.encode("latin-1")),)

    async def metadata(self, exchange: Exchange, connection: str, event: AuditEvent) -> None:
        event.decision, event.reason = "allow", "MCP protected resource metadata"
        if exchange.head.method != "GET":
            await self._answer(exchange, event, 405, b"", headers=((b"allow", b"GET"),))
            return
        document = {
            "resource": self.resource(exchange, connection),
            # The providers in force now: a reload may have changed them.
            "authorization_servers": list(self.gateway.live.authenticator.issuers),
            "bearer_methods_supported": ["header"],
            "resource_name": f'l7proxy MCP endpoint for Kubernetes connection "{connection}"',
        }
        await self._answer(exchange, event, 200, json.dumps(document).encode())

    # -- the transport -----------------------------------------------------------------
    async def serve(
        self, exchange: Exchange, connection: str, auth: Authenticated, event: AuditEvent
    ) -> None:
        event.decision = "allow"
        event.reason = f"MCP {exchange.head.method}"
        try:
            await self._by_method(exchange, connection, auth, event)
        except HttpError as refusal:
            await _discard_body(exchange)
            event.reason = f"MCP refused: {refusal.message}"
            body = rpc.error_message(None, refusal.code, refusal.message)
            await self._answer(exchange, event, refusal.status, body, headers=refusal.headers)
        except MessageError as exc:
            event.reason = f"MCP refused: {exc.message}"
            body = rpc.error_message(exc.id, exc.code, exc.message)
            await self._answer(exchange, event, 400, body)

    async def _by_method(
        self, exchange: Exchange, connection: str, auth: Authenticated, event: AuditEvent
    ) -> None:
        self._check_origin(exchange)
        match exchange.head.method:
            case "POST":
                await self._post(exchange, connection, auth, event)
            case "DELETE":
                session = self._session(exchange, connection, auth)
                self.sessions.close(session)
                event.reason = "MCP session ended"
                await self._answer(exchange, event, 204, b"")
            case _:  # no server-initiated stream is offered on GET
                allow = ((b"allow", _ALLOW),)
                raise HttpError(
                    405, rpc.INVALID_REQUEST, "POST a message or DELETE the session", allow
                )

    def _check_origin(self, exchange: Exchange) -> None:
        """Transport §2.0.1: a browser's request from an origin other than the one it
        addresses (its Host) is refused; clients that are no browser send no Origin. What
        stops DNS rebinding for good is the bearer token, which no browser adds by itself,
        and TLS, whose certificate names the gateway."""
        origin = exchange.head.header(b"origin")
        if origin is not None and origin.decode("latin-1") != self._origin(exchange):
            raise HttpError(403, rpc.INVALID_REQUEST, "the Origin is not this gateway's")

    def _session(self, exchange: Exchange, connection: str, auth: Authenticated) -> McpSession:
        raw = exchange.head.header(SESSION_HEADER)
        if raw is None:
            raise HttpError(400, rpc.INVALID_REQUEST, "Mcp-Session-Id is missing: initialize first")
        version = exchange.head.header(VERSION_HEADER)
        if version is not None and version.decode("latin-1") not in rpc.SUPPORTED_VERSIONS:
            raise HttpError(400, rpc.INVALID_REQUEST, "unsupported MCP-Protocol-Version")
        session = self.sessions.find(
            raw.decode("latin-1"), auth.identity.username, connection, trio.current_time()
        )
        if session is None:
            raise HttpError(404, rpc.INVALID_REQUEST, "no such session: initialize again")
        return session

    async def _post(
        self, exchange: Exchange, connection: str, auth: Authenticated, event: AuditEvent
    ) -> None:
        content_type = (exchange.head.header(b"content-type") or b"").split(b";")[0].strip()
        if content_type.lower() != rpc.JSON:
            raise HttpError(415, rpc.INVALID_REQUEST, "the body must be application/json")
        accepts = rpc.parse_accept(exchange.head.header(b"accept"))
        if not (accepts.json or accepts.event_stream):
            raise HttpError(
                406, rpc.INVALID_REQUEST, "accept application/json or text/event-stream"
            )
        message = rpc.parse_message(await self._read(exchange, event))
        if isinstance(message, Request) and message.method == "initialize":
            await self._initialize(exchange, message, connection, auth, event, accepts)
            return
        self._session(exchange, connection, auth)
        if isinstance(message, Notification | Response):
            event.reason = (
                f"MCP {message.method if isinstance(message, Notification) else 'response'}"
            )
            await self._answer(exchange, event, 202, b"")
            return
        event.reason = f"MCP {message.method}"
        context = CallContext(self.gateway, connection, auth, event.audit_id)
        if _wants_stream(message, accepts):
            await self._stream(exchange, message, context, event)
            return
        body = await _dispatch(message, context, progress=None)
        await self._answer(exchange, event, 200, body, content_type=rpc.JSON)

    async def _read(self, exchange: Exchange, event: AuditEvent) -> bytes:
        body = bytearray()
        while chunk := await exchange.receive():
            body += chunk
            event.bytes_in = len(body)
            if len(body) > MAX_MESSAGE_BYTES:
                raise HttpError(
                    413, rpc.INVALID_REQUEST, f"a message is at most {MAX_MESSAGE_BYTES} bytes"
                )
        return bytes(body)

    async def _initialize(
        self,
        exchange: Exchange,
        request: Request,
        connection: str,
        auth: Authenticated,
        event: AuditEvent,
        accepts: Accepts,
    ) -> None:
        version = rpc.negotiate_version(request.params.get("protocolVersion"))
        user = auth.identity.username
        session = self.sessions.open(user, connection, version, trio.current_time())
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {
                "name": "l7proxy",
                "title": "l7proxy Kubernetes gateway",
                "version": __version__,
            },
            "instructions": (
                f'Kubernetes connection "{connection}" as {user}, through the l7proxy gateway: '
                "every tool call is authorized by your policies and audited."
            ),
        }
        event.reason = "MCP initialize"
        body = rpc.result_message(request.id, result)
        header = ((SESSION_HEADER, session.id.encode("ascii")),)
        if accepts.json:
            await self._answer(exchange, event, 200, body, content_type=rpc.JSON, headers=header)
        else:
            await self._answer(
                exchange,
                event,
                200,
                rpc.sse_event(body),
                content_type=rpc.EVENT_STREAM,
                headers=header,
            )

    async def _stream(
        self, exchange: Exchange, request: Request, context: CallContext, event: AuditEvent
    ) -> None:
        """The response as a server-sent event stream: a progress notification after each
        Kubernetes request of the call, then the response, then the end of the stream."""
        token = (request.params.get("_meta") or {}).get("progressToken")
        event.status = 200
        await exchange.start_response(200, self._headers(event, rpc.EVENT_STREAM, ()))
        done = 0

        async def progress(what: str) -> None:
            nonlocal done
            done += 1
            if token is None:
                return
            note = rpc.notification_message(
                "notifications/progress",
                {"progressToken": token, "progress": done, "message": what},
            )
            await self._send(exchange, event, rpc.sse_event(note))

        try:
            body = await _dispatch(request, context, progress=progress)
            await self._send(exchange, event, rpc.sse_event(body))
            await exchange.finish()
        except ClientDisconnected:
            event.ended_by = "client"

    @staticmethod
    async def _send(exchange: Exchange, event: AuditEvent, data: bytes) -> None:
        event.bytes_out += len(data)
        await exchange.send(data)

    @staticmethod
    def _headers(
        event: AuditEvent, content_type: bytes, extra: tuple[tuple[bytes, bytes], ...]
    ) -> list[tuple[bytes, bytes]]:
        headers = [(b"audit-id", event.audit_id.encode()), *extra]
        if content_type:
            headers.append((b"content-type", content_type))
        if content_type == rpc.EVENT_STREAM:
            headers.append((b"cache-control", b"no-cache"))
        return headers

    async def _answer(
        self,
        exchange: Exchange,
        event: AuditEvent,
        status: int,
        body: bytes,
        *,
        content_type: bytes = rpc.JSON,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        event.status, event.bytes_out = status, len(body)
        fields = self._headers(event, content_type if body else b"", headers)
        if status not in (204, 304):
            fields.append((b"content-length", str(len(body)).encode()))
        try:
            await exchange.start_response(status, fields)
            if body:
                await exchange.send(body)
            await exchange.finish()
        except ClientDisconnected:
            event.ended_by = "client"


def _wants_stream(request: Request, accepts: Accepts) -> bool:
    if not accepts.json:
        return True
    meta = request.params.get("_meta")
    return (
        accepts.event_stream
        and request.method == "tools/call"
        and isinstance(meta, dict)
        and "progressToken" in meta
    )


async def _dispatch(request: Request, context: CallContext, progress: Progress | None) -> bytes:
    """The response message to one request (a JSON-RPC error for a protocol error)."""
    try:
        match request.method:
            case "ping":
                result: dict[str, Any] = {}
            case "tools/list":
                result = {"tools": [tool.listing() for tool in TOOLS]}
            case "tools/call":
                result = await call_tool(context, request.params, progress)
            case _:
                return rpc.error_message(
                    request.id, rpc.METHOD_NOT_FOUND, f"method not found: {request.method}"
                )
    except MessageError as exc:
        return rpc.error_message(request.id, exc.code, exc.message)
    return rpc.result_message(request.id, result)


async def _discard_body(exchange: Exchange) -> None:
    """Read what is left of a refused request's body (bounded), so its connection can be
    reused; a client still sending after that loses the connection instead."""
    seen = 0
    with trio.move_on_after(1.0):
        while seen <= MAX_MESSAGE_BYTES and (chunk := await exchange.receive()):
            seen += len(chunk)
