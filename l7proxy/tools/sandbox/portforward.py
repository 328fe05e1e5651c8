"""`pods/<name>/portforward`: every port of every pod is an in-process echo service.

kubectl speaks the kubelet's port-forward protocol (`portforward.k8s.io`) over SPDY/3.1,
either on the upgraded connection itself (every client; `Upgrade: SPDY/3.1`) or, from
kubectl 1.31, tunnelled in WebSocket binary messages (subprotocol
`SPDY/3.1+portforward.k8s.io`), falling back to the former when the server refuses. A
WebSocket naming another subprotocol speaks the kubelet's channel protocol instead
(`portforward_channels`: the Python clients).
Per forwarded local connection the client opens two streams with the same `requestID`
and `port` headers: `streamType: error`, which the server writes a message to only when
forwarding fails, and `streamType: data`, the connection's bytes both ways.
"""

from __future__ import annotations

import trio

from l7proxy.tools.sandbox import portforward_channels
from l7proxy.tools.sandbox.resources import PODS
from l7proxy.tools.sandbox.spdy_session import (
    SpdySession,
    SpdyStream,
    request_header_values,
    switch_protocols,
)
from l7proxy.tools.sandbox.status import ApiError, bad_request, method_not_allowed
from l7proxy.tools.sandbox.store import Store
from l7proxy.wire.exchange import Exchange, UpgradedStream
from l7proxy.wire.h1_server import wants_upgrade
from protocols.websocket import (
    ClientHandshake,
    Close,
    CloseCode,
    FrameParser,
    HandshakeError,
    Message,
    Opcode,
    WebSocketError,
    encode_close,
    encode_frame,
    server_handshake_headers,
    validate_client_handshake,
)
from protocols.websocket import Event as WsEvent
from protocols.websocket import Ping as WsPing

PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+" + PROTOCOL
# How long the second stream of a pair may take to arrive (the kubelet's default).
STREAM_CREATION_TIMEOUT = 30.0
MAX_PENDING_PAIRS = 64


async def serve_portforward(exchange: Exchange, store: Store, namespace: str, name: str) -> None:
    """Answer a port-forward request: check the pod, upgrade, then echo until the client
    closes the connection."""
    head = exchange.head
    if head.method not in ("GET", "POST"):
        raise method_not_allowed()
    store.get(PODS, namespace, name)  # 404 for a pod that does not exist
    if not wants_upgrade(head):
        raise bad_request("Upgrade request required")
    upgrade = (head.header(b"upgrade") or b"").decode("latin-1").strip().lower()
    if upgrade == "websocket":
        handshake = _websocket_handshake(exchange)
        if TUNNEL_PROTOCOL not in handshake.protocols:  # the kubelet's own WebSocket protocol
            await _serve_channels(exchange, handshake)
            return
        headers = server_handshake_headers(handshake.key, TUNNEL_PROTOCOL)
        transport: UpgradedStream = WebSocketTunnel(await switch_protocols(exchange, headers))
    elif upgrade == "spdy/3.1":
        transport = await _upgrade_spdy(exchange)
    else:
        raise bad_request(f"unable to upgrade: unsupported protocol {upgrade!r}")
    await SpdySession(transport).run(_forward)


async def _upgrade_spdy(exchange: Exchange) -> UpgradedStream:
    """What apimachinery's SPDY response upgrader answers, after the kubelet's handshake."""
    offered = request_header_values(exchange.head, b"x-stream-protocol-version")
    if PROTOCOL not in offered:
        raise ApiError(
            403,
            "Forbidden",
            f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
            f"server accepts [{PROTOCOL}]",
        )
    return await switch_protocols(
        exchange,
        [
            (b"connection", b"Upgrade"),
            (b"upgrade", b"SPDY/3.1"),
            (b"x-stream-protocol-version", PROTOCOL.encode()),
        ],
    )


def _websocket_handshake(exchange: Exchange) -> ClientHandshake:
    try:
        return validate_client_handshake(exchange.head.method, exchange.head.headers)
    except HandshakeError as exc:
        raise ApiError(exc.status, "BadRequest", f"unable to upgrade: {exc}") from exc


async def _serve_channels(exchange: Exchange, handshake: ClientHandshake) -> None:
    protocol = portforward_channels.select(handshake)
    if protocol is None:
        raise bad_request(
            f"unable to upgrade: requested protocol(s) are not supported: "
            f"{list(handshake.protocols)}; supports "
            f"{[TUNNEL_PROTOCOL, *portforward_channels.PROTOCOLS]}"
        )
    await portforward_channels.serve_channels(exchange, handshake, protocol)


class WebSocketTunnel:
    """The byte stream client-go's TunnelingConnection carries in WebSocket binary
    messages, as an `UpgradedStream` the SPDY session reads and writes."""

    def __init__(self, transport: UpgradedStream) -> None:
        self._transport = transport
        self._frames = FrameParser(masked=True)
        self._closed = False

    async def receive_some(self) -> bytes:
        """The payload of the next binary messages; b"" once the client closed (or broke
        the protocol, which is answered with a close frame)."""
        while not self._closed:
            data = await self._transport.receive_some()
            if not data:
                return b""
            payload = bytearray()
            try:
                for event in self._frames.feed(data):
                    payload += await self._handle(event)
            except WebSocketError as exc:
                await self._close(exc.close_code, str(exc))
            if payload:
                return bytes(payload)
        return b""

    async def _handle(self, event: WsEvent) -> bytes:
        if isinstance(event, Message):
            if event.opcode != Opcode.BINARY:
                await self._close(CloseCode.UNSUPPORTED_DATA, "invalid message type received")
                return b""
            return event.payload if not self._closed else b""
        if isinstance(event, WsPing):
            await self._transport.send_all(encode_frame(Opcode.PONG, event.payload))
        elif isinstance(event, Close):
            await self._close(CloseCode.NORMAL if event.code is not None else None, "")
        return b""

    async def _close(self, code: int | None, reason: str) -> None:
        if not self._closed:
            self._closed = True
            await self._transport.send_all(encode_close(code, reason))

    async def send_all(self, data: bytes) -> None:
        await self._transport.send_all(encode_frame(Opcode.BINARY, data))


class _Pair:
    """The error and data streams of one forwarded connection."""

    def __init__(self) -> None:
        self.error: SpdyStream | None = None
        self.data: SpdyStream | None = None
        self.complete = trio.Event()

    def add(self, stream: SpdyStream) -> str | None:
        """Take `stream`; a message for the error stream if it cannot be taken."""
        kind = stream.header(b"streamtype")
        if (self.error if kind == "error" else self.data) is not None:
            return f"{kind} stream already assigned"
        if kind == "error":
            self.error = stream
            stream.stop_receiving()  # the client only reads it
        else:
            self.data = stream
        if self.error is not None and self.data is not None:
            self.complete.set()
        return None


def _problem(stream: SpdyStream) -> str | None:
    """Why the kubelet would reject this stream, if it would."""
    port = stream.header(b"port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"unable to parse {port!r} as a port"
    if stream.header(b"streamtype") not in ("error", "data"):
        return f"invalid stream type {stream.header(b'streamtype')!r}"
    return None


def _request_id(stream: SpdyStream) -> str:
    """The pair a stream belongs to; clients older than request ids open error then data
    with consecutive odd ids, which is what the kubelet falls back on too."""
    if request_id := stream.header(b"requestid"):
        return request_id
    offset = 0 if stream.header(b"streamtype") == "error" else 2
    return str(stream.stream_id - offset)


async def _forward(session: SpdySession) -> None:
    pairs: dict[str, _Pair] = {}
    async with trio.open_nursery() as nursery:
        while True:
            stream = await session.accept()
            if _problem(stream) is not None or (
                _request_id(stream) not in pairs and len(pairs) >= MAX_PENDING_PAIRS
            ):
                await stream.reset()
                continue
            await stream.reply()
            request_id = _request_id(stream)
            pair = pairs.get(request_id)
            if pair is None:
                pair = pairs[request_id] = _Pair()
                nursery.start_soon(_run_pair, pairs, request_id, pair)
            message = pair.add(stream)
            if message is not None:
                await _fail(pair, f"error processing stream for request {request_id}: {message}")
                await stream.reset()


async def _run_pair(pairs: dict[str, _Pair], request_id: str, pair: _Pair) -> None:
    with trio.move_on_after(STREAM_CREATION_TIMEOUT):
        await pair.complete.wait()
    del pairs[request_id]
    if pair.data is None or pair.error is None:
        await _fail(pair, f"(request {request_id}) timed out waiting for streams")
        if pair.data is not None:
            await pair.data.reset()
        return
    await _echo(pair.data)
    await pair.error.close()


async def _echo(stream: SpdyStream) -> None:
    """The service behind every port: send back whatever arrives, until the client's FIN."""
    while data := await stream.receive():
        await stream.send(data)
    await stream.close()


async def _fail(pair: _Pair, message: str) -> None:
    if pair.error is not None:
        await pair.error.send(message.encode())
        await pair.error.close()
