"""pods/portforward over the kubelet's WebSocket channel protocol (`v4.channel.k8s.io` and
its base64 twin), frame by frame in memory: the port announcement on every channel, then
each data channel echoed; the official client's own run is in tests/e2e."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from l7proxy.tools.sandbox import SandboxCluster
from l7proxy.tools.sandbox.portforward_channels import parse_ports
from l7proxy.tools.sandbox.status import ApiError
from l7proxy.wire.exchange import RequestHead
from protocols.k8s_channels import V4, V4_BASE64
from protocols.websocket import Close, FrameParser, Message, Opcode, encode_close, encode_frame
from tests.l7proxy.tools.sandbox.test_sandbox_portforward import (
    MASK,
    PORTFORWARD,
    WS_UPGRADE,
    UpgradeExchange,
    _ws_events,
)


def _channels_exchange(protocol: bytes, query: str) -> UpgradeExchange:
    exchange = UpgradeExchange(
        f"{PORTFORWARD}?{query}", [*WS_UPGRADE[:4], (b"sec-websocket-protocol", protocol)]
    )
    exchange.head = RequestHead("GET", exchange.head.target, exchange.head.headers, "1.1")
    return exchange


def _messages(events: list[object]) -> list[tuple[Opcode, bytes]]:
    return [(e.opcode, e.payload) for e in events if isinstance(e, Message)]


@asynccontextmanager
async def _session(
    cluster: SandboxCluster, protocol: bytes, query: str
) -> AsyncIterator[tuple[UpgradeExchange, FrameParser]]:
    """The sandbox serving one port-forward in the background; the test is its client."""
    exchange = _channels_exchange(protocol, query)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cluster.handle, exchange)
        yield exchange, FrameParser(masked=False)
        nursery.cancel_scope.cancel()


async def _send(exchange: UpgradeExchange, opcode: Opcode, payload: bytes) -> None:
    await exchange.to_server_send.send(encode_frame(opcode, payload, mask_key=MASK))


async def test_each_port_gets_a_data_and_an_error_channel_announced_then_echoed(
    cluster: SandboxCluster,
) -> None:
    offered = b"v5.channel.k8s.io, v4.channel.k8s.io"
    async with _session(cluster, offered, "ports=80,8080") as (exchange, frames):
        announced = _messages(await _ws_events(exchange, frames, 4))
        assert announced == [
            (Opcode.BINARY, b"\x00\x50\x00"),
            (Opcode.BINARY, b"\x01\x50\x00"),
            (Opcode.BINARY, b"\x02\x90\x1f"),
            (Opcode.BINARY, b"\x03\x90\x1f"),
        ]
        for payload in (b"\x02second port", b"\x01ignored: an error channel", b"\x00first"):
            await _send(exchange, Opcode.BINARY, payload)
        echoed = _messages(await _ws_events(exchange, frames, 2))
        assert echoed == [(Opcode.BINARY, b"\x02second port"), (Opcode.BINARY, b"\x00first")]
        await exchange.to_server_send.send(encode_close(1000, mask_key=MASK))
        assert await _ws_events(exchange, frames, 1) == [Close(1000, "")]
    assert exchange.upgrade_headers[b"sec-websocket-protocol"] == b"v4.channel.k8s.io"


async def test_base64_channels_are_text_messages(cluster: SandboxCluster) -> None:
    async with _session(cluster, b"v4.base64.channel.k8s.io", "ports=80") as (exchange, frames):
        port = base64.b64encode(b"\x50\x00")
        assert _messages(await _ws_events(exchange, frames, 2)) == [
            (Opcode.TEXT, b"0" + port),
            (Opcode.TEXT, b"1" + port),
        ]
        sent = b"0" + base64.b64encode(b"hello")
        await _send(exchange, Opcode.TEXT, sent)
        assert _messages(await _ws_events(exchange, frames, 1)) == [(Opcode.TEXT, sent)]


async def test_a_bad_channel_message_closes_with_a_protocol_error(
    cluster: SandboxCluster,
) -> None:
    async with _session(cluster, b"v4.base64.channel.k8s.io", "ports=80") as (exchange, frames):
        await _ws_events(exchange, frames, 2)
        await _send(exchange, Opcode.TEXT, b"0***")
        [close] = await _ws_events(exchange, frames, 1)
        assert isinstance(close, Close) and close.code == 1002


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ports=0", "unable to parse '0' as a port"),
        ("ports=80,x", "unable to parse 'x' as a port"),
        ("container=app", 'query parameter "ports" is required'),
        ("ports=" + ",".join(str(p) for p in range(1, 7)), "too many ports"),
    ],
)
def test_bad_ports_are_refused(query: str, message: str) -> None:
    with pytest.raises(ApiError, match=message):
        parse_ports(query, V4_BASE64)


def test_ports_may_repeat_the_parameter() -> None:
    assert parse_ports("ports=80&ports=443,8443", V4) == (80, 443, 8443)
