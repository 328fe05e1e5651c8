"""`pods/<name>/portforward` over the channel WebSocket protocol the Python clients speak.

`v4.channel.k8s.io` (binary) and `v4.base64.channel.k8s.io` (text) frame messages as for
exec (see `protocols.k8s_channels`), with two channels for each port in the `ports` query:
channel 2i carries the forwarded connection's bytes both ways, 2i+1 its errors, server to
client only. The server's first message on every channel is the port number, 2 bytes
little-endian, as the kubelet's `portforward/websocket.go` writes it. Each port is an
in-process echo service, as over SPDY; one connection per port for the session's life.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from l7proxy.tools.sandbox.spdy_session import switch_protocols
from l7proxy.tools.sandbox.status import bad_request
from l7proxy.wire.exchange import ClientDisconnected, Exchange, UpgradedStream
from protocols import k8s_channels
from protocols.k8s_channels import V4, V4_BASE64, ChannelData, ChannelError, ChannelProtocol
from protocols.websocket import (
    ClientHandshake,
    Close,
    CloseCode,
    FrameParser,
    Message,
    Opcode,
    Ping,
    WebSocketError,
    encode_close,
    encode_frame,
    server_handshake_headers,
)

# The kubelet's choices; a client that names no subprotocol gets binary framing.
PROTOCOLS = {p.name: p for p in (V4, V4_BASE64)}


def parse_ports(query: str, protocol: ChannelProtocol) -> tuple[int, ...]:
    """The `ports` query values (repeated or comma-separated), as the kubelet checks them."""
    ports: list[int] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "ports":
            continue
        for text in value.split(","):
            if not text.strip().isdigit() or not 0 < int(text) < 65536:
                raise bad_request(f"unable to parse {text!r} as a port")
            ports.append(int(text))
    if not ports:
        raise bad_request('query parameter "ports" is required')
    if 2 * len(ports) > (10 if protocol.base64 else 255):
        raise bad_request(f"too many ports for {protocol.name}: {len(ports)}")
    return tuple(ports)


def select(handshake: ClientHandshake) -> ChannelProtocol | None:
    """The subprotocol to answer with; None if the client offered only others."""
    if not handshake.protocols:
        return V4
    return next((PROTOCOLS[p] for p in handshake.protocols if p in PROTOCOLS), None)


async def serve_channels(
    exchange: Exchange, handshake: ClientHandshake, protocol: ChannelProtocol
) -> None:
    """Upgrade, announce every channel's port, then echo each data channel until the
    client closes."""
    ports = parse_ports(exchange.head.query, protocol)
    named = protocol.name if handshake.protocols else None
    headers = server_handshake_headers(handshake.key, named)
    session = _Session(await switch_protocols(exchange, headers), protocol)
    try:
        for index, port in enumerate(ports):
            prefix = port.to_bytes(2, "little")
            await session.send(2 * index, prefix)
            await session.send(2 * index + 1, prefix)
        await session.echo(len(ports))
    except ClientDisconnected:
        return  # the client went away: nothing is left to answer


class _Session:
    def __init__(self, stream: UpgradedStream, protocol: ChannelProtocol) -> None:
        self._stream = stream
        self._protocol = protocol
        self._frames = FrameParser(masked=True)

    async def send(self, channel: int, data: bytes) -> None:
        opcode, payload = k8s_channels.encode(channel, data, self._protocol)
        await self._stream.send_all(encode_frame(opcode, payload))

    async def echo(self, port_count: int) -> None:
        """Read the client's frames, answering each data message on its own channel, before
        reading more (the client's pace bounds what is held)."""
        while data := await self._stream.receive_some():
            try:
                for event in self._frames.feed(data):
                    if isinstance(event, Close):
                        await self._stream.send_all(encode_close(event.code))
                        return
                    if isinstance(event, Ping):
                        await self._stream.send_all(encode_frame(Opcode.PONG, event.payload))
                    elif isinstance(event, Message):
                        await self._deliver(event, port_count)
            except WebSocketError as err:
                await self._stream.send_all(encode_close(err.close_code, str(err)))
                return
            except ChannelError as err:
                await self._stream.send_all(encode_close(CloseCode.PROTOCOL_ERROR, str(err)))
                return

    async def _deliver(self, message: Message, port_count: int) -> None:
        event = k8s_channels.decode(message.opcode, message.payload, self._protocol)
        # Error channels and unknown channels are not read, as in the kubelet.
        if not isinstance(event, ChannelData) or not event.data:
            return
        if event.channel % 2 == 0 and event.channel < 2 * port_count:
            await self.send(event.channel, event.data)
